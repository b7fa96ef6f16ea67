"""One video shared by two real Celery workers over a real Redis: each upscales segments of it, the
job's worker joins them, and the result has every frame and the sound's packets unchanged."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time

from esrgan.video.frames import DEFAULT_VIDEO_MODEL
from esrgan.video.probe import probe
from tests.conftest import job_finished
from tests.hooks import Hooks
from tests.media import packets, write_clip
from tests.test_distributed import (  # noqa: F401
    pytestmark,
    redis_url,
    start_workers,
    stop_workers,
)

FRAMES = 36  # 3 s at 12 fps
SEGMENT_WORK_S = 0.1  # estimated work a segment: a handful of segments of a few frames
# As in the other Celery tests, not raised above the jobs' length: a copy Redis hands out while the
# task's worker is alive waits for it (`web.worker.main`; tested in test_distributed).
VISIBILITY = 5
SEGMENT_FRAMES = 6.5  # frames' worth of estimated work a segment holds in the kill test
STALE = 6  # seconds before a dead helper's claim is taken over (its heartbeat every 1.5 s)


def test_two_workers_share_the_segments_of_one_video(redis_url, tmp_path, weights_dir, make_app):  # noqa: F811
    uploads, workers, logs = start_workers(redis_url, tmp_path, weights_dir, ("alpha", "beta"),
                                           VIDEO_SEGMENT_SECONDS=SEGMENT_WORK_S, VISIBILITY_TIMEOUT=VISIBILITY)
    try:
        app = make_app(BROKER_URL=redis_url, UPLOAD_FOLDER=str(uploads), VIDEO_SEGMENT_SECONDS=SEGMENT_WORK_S,
                       VISIBILITY_TIMEOUT=VISIBILITY)
        client = app.test_client()
        clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=FRAMES, gop=250)  # x264's default: one keyframe
        assert len(probe(clip).keyframes) == 1
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
    record = files.load_record(job_id)
    assert set(record["provenance"]["segments"]) == {"alpha@test", "beta@test"}
    assert len(record["media"]["plan"]) == len(record["provenance"]["segments"]) >= 2
    assert not (uploads / f"{job_id}_work").exists() and not list(uploads.glob(f"{job_id}_segment*"))


def seen_in(work) -> tuple[dict[int, str], dict[int, tuple[int, str]]]:
    """What the segment store says: who finished which segment, and who holds which (frames done)."""
    done, held = {}, {}
    for path in work.glob("by-segment-*.unit"):
        with contextlib.suppress(OSError, ValueError):
            done[int(path.name.split("-")[2])] = json.loads(path.read_text())["worker"]
    for path in work.glob("segment-*.unit.claim"):
        with contextlib.suppress(OSError, ValueError):
            frames, _, holder = path.read_text().partition(" ")
            held[int(path.name.split("-")[1])] = (int(frames), holder)
    return done, held


def test_a_worker_killed_mid_segment_loses_that_segment_only(redis_url, tmp_path, weights_dir, make_app):  # noqa: F811
    """SIGKILL a helper while it holds a segment part-way (the store says so): the segments finished
    before stay as they are, the lost one is upscaled by the survivor, and the job's progress counted
    the helper's frames while it lived."""
    settings = {"VIDEO_PREVIEW_FRAMES": 0, "VIDEO_STALE_SECONDS": STALE, "VISIBILITY_TIMEOUT": VISIBILITY}
    app = make_app(BROKER_URL=redis_url, UPLOAD_FOLDER=str(tmp_path / "uploads"), **settings)
    # The job's estimate (made here, at submission, with no hook) plans its segments: about six frames
    # each, so that one can be seen held part-way.
    per_frame = app.extensions["remaster"].runner.estimate_seconds(DEFAULT_VIDEO_MODEL, 64, 48)
    settings["VIDEO_SEGMENT_SECONDS"] = SEGMENT_FRAMES * per_frame
    slow = Hooks(delay=0.03)  # tens of steps a frame: slow on purpose (the workers only)
    uploads, workers, logs = start_workers(redis_url, tmp_path, weights_dir, ("alpha", "beta"), slow, **settings)
    try:
        files = app.extensions["remaster"].files
        clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=FRAMES)
        form = {"scale": "2", "file": (io.BytesIO(clip.read_bytes()), "clip.mp4")}
        job_id = app.test_client().post("/api/jobs", data=form, content_type="multipart/form-data").get_json()["id"]
        work, frames = uploads / f"{job_id}_work", {}
        counted, deadline = False, time.monotonic() + 300
        while True:  # until the helper holds its second segment part-way, its first one finished
            assert time.monotonic() < deadline, (tmp_path / "alpha.log").read_text()[-3000:]
            record = files.load_record(job_id)
            assert record["status"] == "queued" or record["status"] == "running", record
            owner = record["worker"]
            frames = frames or {i: row[2] for i, row in enumerate((record.get("media") or {}).get("plan") or [])}
            done, held = seen_in(work)
            if owner is None or not frames or not done and not held:
                time.sleep(0.05)
                continue
            mine = sum(frames[i] for i, w in done.items() if w == owner) + sum(
                f for f, w in held.values() if w == owner)  # read after the record: no less than then
            counted = counted or record["steps_done"] > mine  # other workers' frames were in it
            helper = ({"alpha@test", "beta@test"} - {owner}).pop()
            holding = [i for i, (f, w) in held.items() if w == helper and 0 < f < frames[i] - 1]
            if counted and holding and helper in done.values():
                break
            time.sleep(0.05)
        os.kill(workers[helper.split("@")[0]].pid, signal.SIGKILL)
        victim, before = holding[0], dict(done)
        view = job_finished(app.test_client(), job_id, 300)
        assert view["status"] == "done", view["error"]
        record = files.load_record(job_id)
        assert record["steps_done"] == record["steps_total"] == FRAMES
        out = files.resolve(record["output_file"])
        assert probe(out).frames == FRAMES and packets(out, "audio") == packets(clip, "audio")
    finally:
        stop_workers(workers, logs)
    by = record["provenance"]["segments"]
    assert {i: by[i] for i in before} == before and victim not in before  # finished before: kept as they were
    assert by[victim] == owner and set(by) == {owner, helper}
    logs = (tmp_path / "alpha.log").read_text() + (tmp_path / "beta.log").read_text()
    for index in frames:  # each segment upscaled once, the lost one only by the survivor
        assert logs.count(f"segment {index} of job {job_id} done by") == 1, index
    assert f"segment {victim} of job {job_id} done by the job's own process" in logs
    assert sorted(p.name for p in uploads.iterdir() if p.name.startswith(job_id)) == [
        f"{job_id}.json", f"{job_id}_in.mp4", f"{job_id}_out.mp4"]
