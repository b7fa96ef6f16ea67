"""Hostile and broken videos, each a few hundred bytes the test writes: refused cleanly (a 4xx naming
the file as it was sent, nothing left behind) without costing memory; broken containers are called
damaged videos; a clip's length is its timestamps', wherever they start; a frame that grows
mid-stream is refused by its number; a video may be asked for by its result's width."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from esrgan.video.errors import VideoTooLargeError
from esrgan.video.options import VideoWork
from esrgan.video.probe import media_kind, probe
from esrgan.video.transcode import upscale_video
from tests.hostile_media import (
    bomb_mov,
    declare_samples,
    growing_mov,
    late_start_mkv,
    noise_after_header,
    without_box,
)
from tests.media import write_clip

ROOT = Path(__file__).resolve().parent.parent
MEMORY_MB = 64  # what refusing bombs may add to the server's peak memory, several at once
AT_ONCE = 4


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-clips")
    write_clip(folder / "clip.mp4", subtitle="", frames=12)
    write_clip(folder / "clip.mkv", subtitle="", frames=12)
    return folder


def post(client, data: bytes, name: str, **fields):
    form = {"scale": "2", **fields, "file": (io.BytesIO(data), name)}
    return client.post("/api/jobs", data=form, content_type="multipart/form-data")


def stored(app) -> list[str]:
    return sorted(p.name for p in app.extensions["remaster"].files.root.iterdir() if p.name != ".gitkeep")


def broken(clips: Path) -> dict[str, bytes]:
    return {
        "noise.mp4": noise_after_header(clips / "clip.mp4", 32),
        "noise.mkv": noise_after_header(clips / "clip.mkv", 40),
        "lost index.mp4": without_box(clips / "clip.mp4", b"moov"),
        "no frames.mp4": declare_samples(clips / "clip.mp4", 0),
        "many samples.mp4": declare_samples(clips / "clip.mp4", 100_000_000),
    }


def test_a_bomb_is_refused_as_too_large_naming_the_file_as_sent(app):
    client = app.test_client()
    response = post(client, bomb_mov(), "holiday bomb.mov")
    assert response.status_code == 413, response.get_json()
    error = response.get_json()["error"]
    assert error.startswith("holiday bomb.mov declares frames"), error
    assert ".part" not in error and "upload" not in error.split(":")[0]
    assert stored(app) == []
    assert client.get("/healthz").status_code == 200


def test_the_engine_refuses_a_size_it_could_not_read_below_the_limit(tmp_path):
    bomb = tmp_path / "bomb.mov"
    bomb.write_bytes(bomb_mov())
    assert media_kind(bomb) == "video"
    with pytest.raises(VideoTooLargeError, match=r"sent\.mov declares frames whose size cannot be read"):
        probe(bomb, name="sent.mov")


def test_refusing_bombs_several_at_once_costs_little_memory(tmp_path, weights_dir):
    """In a child process, the real app refuses AT_ONCE bombs in parallel threads; its peak resident
    memory (reset after a first refusal) may grow by MEMORY_MB at most."""
    bomb = tmp_path / "bomb.mov"
    bomb.write_bytes(bomb_mov())
    script = textwrap.dedent(f"""
        import io, json, threading
        from web import create_app
        app = create_app({{"TESTING": True, "UPLOAD_FOLDER": {str(tmp_path / "uploads")!r},
                          "WEIGHTS_FOLDER": {str(weights_dir)!r}, "PRELOAD_MODELS": False, "DEVICE": "cpu"}})
        data = open({str(bomb)!r}, "rb").read()
        answers = []
        def post():
            form = {{"scale": "2", "file": (io.BytesIO(data), "bomb.mov")}}
            answers.append(app.test_client().post("/api/jobs", data=form, content_type="multipart/form-data")
                           .status_code)
        post()
        def status(key):
            return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) // 1024
        open("/proc/self/clear_refs", "w").write("5")  # the peak from here on
        idle = status("VmRSS")
        threads = [threading.Thread(target=post) for _ in range({AT_ONCE})]
        for t in threads: t.start()
        for t in threads: t.join()
        print(json.dumps({{"answers": answers, "idle": idle, "peak": status("VmHWM")}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["answers"] == [413] * (AT_ONCE + 1)
    assert facts["peak"] - facts["idle"] < MEMORY_MB, facts


def test_broken_containers_are_damaged_videos_saying_what_is_wrong(app, clips):
    client = app.test_client()
    for name, data in broken(clips).items():
        response = post(client, data, name)
        assert response.status_code == 400, (name, response.get_json())
        error = response.get_json()["error"]
        assert error.startswith(f"{name} is a damaged video"), (name, error)
        assert error.split("damaged video", 1)[1].strip(" :()"), error  # and what is wrong
        assert "JPEG" not in error and ".part" not in error
    assert stored(app) == []


def test_a_clip_starting_an_hour_in_lasts_its_timestamps(make_app, tmp_path):
    clip = late_start_mkv(tmp_path / "late.mkv", start_s=3600, frames=8)
    info = probe(clip)
    assert info.duration == pytest.approx(8 / 12, abs=1e-3)
    app = make_app(MAX_VIDEO_SECONDS=5)
    response = post(app.test_client(), clip.read_bytes(), "late.mkv", model="realesr-animevideov3")
    assert response.status_code == 202, response.get_json()


def test_a_frame_that_grows_mid_stream_is_refused_by_its_number(tmp_path):
    src = tmp_path / "grows.mov"
    src.write_bytes(growing_mov(frames=4, grown=2, side=5000))
    assert probe(src).frames == 4  # the first frame, all the probe decodes, is fine
    with pytest.raises(VideoTooLargeError, match="frame 3 of the video is larger than its declared 16x16"):
        upscale_video(src, tmp_path / "out.mp4", VideoWork(lambda rgb: rgb.repeat(2, 0).repeat(2, 1), 2))
    assert list(tmp_path.iterdir()) == [src]


def test_a_video_may_be_asked_for_by_its_width(app, clips):
    response = post(app.test_client(), (clips / "clip.mp4").read_bytes(), "clip.mp4", scale="", width="128",
                    model="realesr-animevideov3")
    assert response.status_code == 202, response.get_json()
    job = app.extensions["remaster"].runner.get(response.get_json()["id"])
    assert (job.scale, job.output_width, job.output_height) == (2, 128, 96)
