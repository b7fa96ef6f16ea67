"""One video shared by two real Celery workers over a real Redis: each upscales segments of it, the
job's worker joins them, and the result has every frame and the sound's packets unchanged."""

from __future__ import annotations

import io
import time

from esrgan.video import probe
from tests.media import packets, write_clip
from tests.test_distributed import pytestmark, redis_url, start_workers, stop_workers  # noqa: F401

FRAMES = 36  # 3 s at 12 fps, a keyframe every 6 frames: six segments of half a second
# Longer than any of these jobs: Redis hands an unacknowledged task to another worker after this,
# even while its worker is alive, and a job running twice is not what these tests are about.
VISIBILITY = 600


def test_two_workers_share_the_segments_of_one_video(redis_url, tmp_path, weights_dir, make_app):  # noqa: F811
    uploads, workers, logs = start_workers(redis_url, tmp_path, weights_dir, ("alpha", "beta"),
                                           VIDEO_SEGMENT_SECONDS=0.5, VISIBILITY_TIMEOUT=VISIBILITY)
    try:
        app = make_app(BROKER_URL=redis_url, UPLOAD_FOLDER=str(uploads), VIDEO_SEGMENT_SECONDS=0.5,
                       VISIBILITY_TIMEOUT=VISIBILITY)
        client = app.test_client()
        clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=FRAMES)
        form = {"scale": "2", "file": (io.BytesIO(clip.read_bytes()), "clip.mp4")}
        response = client.post("/api/jobs", data=form, content_type="multipart/form-data")
        assert response.status_code == 202, response.get_json()
        job_id = response.get_json()["id"]
        deadline = time.monotonic() + 300
        totals = set()
        while (view := client.get(f"/api/jobs/{job_id}").get_json())["status"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, (tmp_path / "alpha.log").read_text()[-3000:]
            if view["stage"] == "upscaling":
                totals.add(view["progress"]["total"])
            time.sleep(0.1)
        assert view["status"] == "done", view["error"]
        assert totals <= {FRAMES}
        files = app.extensions["remaster"].files
        out = files.resolve(files.load_record(job_id)["output_file"])
        assert probe(out).frames == FRAMES and packets(out, "audio") == packets(clip, "audio")
    finally:
        stop_workers(workers, logs)
    owner = files.load_record(job_id)["worker"].split("@")[0]
    helper = ({"alpha", "beta"} - {owner}).pop()
    assert "done by the job's own process" in (tmp_path / f"{owner}.log").read_text()
    assert f"done by {helper}@test" in (tmp_path / f"{helper}.log").read_text()
    assert set(files.load_record(job_id)["provenance"]["segments"]) == {"alpha@test", "beta@test"}
    assert not (uploads / f"{job_id}_work").exists() and not list(uploads.glob(f"{job_id}_segment*"))
