"""A real ``python app.py`` killed with SIGKILL mid-video resumes after a restart from the segments
it had finished, not from frame 0, and the result has every frame and the sound unchanged."""

from __future__ import annotations

import os
import signal

from esrgan.video import probe
from tests.media import packets, write_clip
from tests.test_restart import job_state, post_job, start_server, wait_until

FRAMES = 24  # 2 s at 12 fps, a keyframe every 6 frames: four segments of half a second
MODEL = "realesrgan-x4plus-anime"  # an RRDBNet: slow enough per frame to be killed mid-video


def finished_segments(folder, job_id: str) -> list[str]:
    """The segments a job has finished so far (units of its store in ``<id>_work/``)."""
    return sorted(p.name for p in (folder / f"{job_id}_work").glob("segment-*.unit"))


def post_clip(base: str, data: bytes) -> str:
    return post_job(base, data, MODEL, scale="2", filename="clip.mp4", content_type="video/mp4")


def test_a_server_killed_mid_video_resumes_from_its_finished_segments(tmp_path, weights_dir, monkeypatch):
    monkeypatch.setenv("REMASTER_VIDEO_SEGMENT_SECONDS", "0.5")
    monkeypatch.setenv("REMASTER_VIDEO_PREVIEW_FRAMES", "0")
    folder = tmp_path / "uploads"
    clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=FRAMES)
    process, base = start_server(folder, weights_dir, tmp_path / "first.log")
    try:
        job_id = post_clip(base, clip.read_bytes())
        wait_until(lambda: finished_segments(folder, job_id), 240, "a finished segment")
        assert job_state(base, job_id)["status"] == "running"
    finally:
        os.kill(process.pid, signal.SIGKILL)  # no chance to clean up
        process.wait(10)
    kept = finished_segments(folder, job_id)
    assert kept
    process, base = start_server(folder, weights_dir, tmp_path / "second.log")
    try:
        wait_until(lambda: job_state(base, job_id)["status"] in ("done", "failed"), 240, "the job to end")
        state = job_state(base, job_id)
    finally:
        process.terminate()
        process.wait(20)
    assert state["status"] == "done", state["error"]
    out = folder / state["result"]["output_path"].rsplit("/", 1)[-1]
    assert probe(out).frames == FRAMES and packets(out, "audio") == packets(clip, "audio")
    redone = (tmp_path / "second.log").read_text().count("done by the job's own process")
    assert redone == 4 - len(kept)  # only the segments the killed server had not finished
    assert state["result"]["provenance"]["segments"] == ["server"] * 4
    assert not (folder / f"{job_id}_work").exists() and not list(folder.glob(f"{job_id}_segment*"))
