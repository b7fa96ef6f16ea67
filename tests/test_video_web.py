"""Videos and animations through the web API, on clips the test writes (real FFmpeg, the real
realesr-animevideov3 at 2x on 64x48 frames): upload -> 202 -> progress in frames -> done ->
download with the sound's packets identical; refusals before work, each a 4xx with its reason and
nothing left behind; a damaged clip fails naming the frame; the quick preview; a resumed run skips
the segments a stopped run finished."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from esrgan.errors import Cancelled
from esrgan.video.animated import probe_animation
from esrgan.video.probe import probe
from tests.conftest import get
from tests.media import damage_frame, halves, packets, write_animation, write_clip
from web.jobs.video import VideoSettings, run_video, segment_files

FRAMES = 12


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("web-clips")
    write_clip(folder / "clip.mp4", subtitle="", frames=FRAMES)
    damage_frame(folder / "clip.mp4", folder / "damaged.mp4", 6)  # a keyframe: no decoder hides that
    write_animation(folder / "a.gif", "GIF", delays=(100, 200, 50))
    return folder


def post(client, path: Path, url: str = "/api/jobs", **fields):
    form = {"scale": "2", **fields, "file": (io.BytesIO(path.read_bytes()), path.name)}
    return client.post(url, data=form, content_type="multipart/form-data")


def wait_finished(client, job_id: str, seconds: float = 120) -> tuple[dict, list[dict]]:
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        view = client.get(f"/api/jobs/{job_id}").get_json()
        seen.append(view)
        if view["status"] in ("done", "failed", "cancelled"):
            # The view says "finished" as the record is being written: wait for the runner to be
            # through with the job before anyone counts the files it left.
            client.application.extensions["remaster"].runner.wait(job_id, 30)
            return view, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {seconds} s")


def leftovers(app) -> list[str]:
    return sorted(p.name for p in app.extensions["remaster"].files.root.iterdir() if not p.name.startswith(".gitkeep"))


@pytest.fixture
def app(make_app):
    return make_app(PRECISION="fp32", VIDEO_SEGMENT_SECONDS=0.5)


def test_a_clip_becomes_a_job_counted_in_frames_and_downloads_with_its_sound(app, clips):
    client = app.test_client()
    response = post(client, clips / "clip.mp4")
    assert response.status_code == 202, response.get_json()
    view = response.get_json()
    assert view["kind"] == "video" and view["progress"]["unit"] == "frames" and view["media"]["frames"] == FRAMES
    view, seen = wait_finished(client, view["id"])
    assert view["status"] == "done", view["error"]
    assert {v["progress"]["total"] for v in seen if v["status"] == "running" and v["stage"] == "upscaling"} <= {FRAMES}
    assert view["mime"] == "video/mp4" and view["media"]["result"]["frames"] == FRAMES
    result = get(client, f"/api/jobs/{view['id']}/result")
    assert result.status_code == 200 and result.mimetype == "video/mp4"
    assert 'filename=clip_x2.mp4' in result.headers["Content-Disposition"]
    out = Path(app.config["UPLOAD_FOLDER"]) / "result.mp4"
    out.write_bytes(result.data)
    after = probe(out)
    assert (after.width, after.height, after.frames) == (128, 96, FRAMES)
    assert packets(out, "audio") == packets(clips / "clip.mp4", "audio")
    out.unlink()
    assert not [n for n in leftovers(app) if "segment" in n or n.endswith(".part")]
    before = get(client, view["before_url"])
    assert before.status_code == 200 and before.mimetype == "video/mp4"


def test_a_gif_stays_a_gif_and_is_no_longer_refused(app, clips):
    client = app.test_client()
    response = post(client, clips / "a.gif")
    assert response.status_code == 202, response.get_json()
    view, _ = wait_finished(client, response.get_json()["id"])
    assert view["status"] == "done" and view["kind"] == "animation", view["error"]
    result = get(client, f"/api/jobs/{view['id']}/result")
    assert result.mimetype == "image/gif" and "a_x2.gif" in result.headers["Content-Disposition"]
    out = Path(app.config["UPLOAD_FOLDER"]) / "check.gif"
    out.write_bytes(result.data)
    gif = probe_animation(out)
    assert (gif.kind, gif.width, gif.height, gif.delays) == ("gif", 82, 66, (100, 200, 50))


def test_the_synchronous_upscale_points_a_video_to_the_job_api(app, clips):
    response = post(app.test_client(), clips / "clip.mp4", url="/upscale")
    assert response.status_code == 415 and "/api/jobs" in response.get_json()["error"]
    assert leftovers(app) == []


@pytest.mark.parametrize(("config", "fields", "status", "words"), [
    ({"MAX_VIDEO_SECONDS": 0.5}, {}, 413, "lasts"),
    ({"MAX_VIDEO_FRAMES": 5}, {}, 413, "frames"),
    ({"MAX_VIDEO_INPUT_PIXELS": 1000}, {}, 413, "MP"),
    ({"MAX_OUTPUT_PIXELS": 10_000}, {}, 413, "128x96"),
    ({"VIDEO_FREE_DISK_MARGIN": 2**62}, {}, 413, "disk"),
    ({"MAX_VIDEO_BYTES": 1000}, {}, 413, "larger than"),
    ({}, {"codec": "h264", "container": "webm"}, 400, "WEBM holds only"),
    ({}, {"crf": "99"}, 400, "crf"),
])
def test_limits_and_bad_options_are_refused_before_work(make_app, clips, config, fields, status, words):
    app = make_app(**config)
    response = post(app.test_client(), clips / "clip.mp4", **fields)
    assert response.status_code == status, response.get_json()
    assert words in response.get_json()["error"]
    assert leftovers(app) == []


def test_an_image_keeps_its_own_smaller_limit(make_app):
    app = make_app(MAX_CONTENT_LENGTH=2000, MAX_VIDEO_BYTES=10**6)
    image = Path(__file__).parent / "data" / "coffee.png"
    response = post(app.test_client(), image)
    assert response.status_code == 413 and "image is larger" in response.get_json()["error"]


def test_a_damaged_clip_fails_naming_the_frame_and_leaves_no_partial_file(app, clips):
    client = app.test_client()
    response = post(client, clips / "damaged.mp4")
    assert response.status_code == 202, response.get_json()
    view, _ = wait_finished(client, response.get_json()["id"])
    assert view["status"] == "failed" and "frame" in view["error"]
    assert [n for n in leftovers(app) if not n.endswith((".json", "_in.mp4"))] == []


def test_preview_comes_first_and_a_stopped_run_resumes_at_its_next_segment(make_app, clips):
    app = make_app(PRECISION="fp32", WORKERS=0, VIDEO_SEGMENT_SECONDS=0.5, VIDEO_PREVIEW_FRAMES=4)
    client = app.test_client()
    job_id = post(client, clips / "clip.mp4").get_json()["id"]
    service = app.extensions["remaster"]
    job, files, upscaler = service.runner.get(job_id), service.files, service.upscaler
    job.media = {**job.media, "plan": halves(files.resolve(job.input_file))}
    settings = VideoSettings(segment_seconds=0.5, preview_frames=4, preview_min_seconds=0)
    stages, progress = [], []

    def stage(name: str) -> None:
        stages.append(name)
        if name == "upscaling":  # the preview is there before the first frame of the result
            preview = probe(files.resolve(job.preview_file))
            assert (preview.frames, preview.width) == (4, 128)

    def stop_after_first_segment() -> bool:
        return bool(segment_files(files, job))

    with pytest.raises(Cancelled):
        run_video(job, upscaler, files, settings, lambda d, t: progress.append(d), stage, stop_after_first_segment)
    assert [p.name.rsplit("-", 1)[0] for p in segment_files(files, job)] == ["segment-00000-of-00002"]
    progress.clear()
    run_video(job, upscaler, files, VideoSettings(0.5, 0), lambda d, t: progress.append(d), stages.append,
               lambda: False)
    assert progress[0] == 0 and min(progress[1:]) == 7 and progress[-1] == FRAMES  # segment 1 was not redone
    out = files.resolve(job.output_file)
    assert probe(out).frames == FRAMES and packets(out, "audio") == packets(clips / "clip.mp4", "audio")
    assert segment_files(files, job) == [] and stages[:2] == ["previewing", "upscaling"]
    assert not files.work_dir(job.id).exists() and job.provenance["segments"] == ["server", "server"]
