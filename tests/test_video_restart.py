"""A real ``python app.py`` killed with SIGKILL mid-video resumes after a restart from the segments
it had finished, not from frame 0, and the result has every frame and the sound unchanged; the
segment store behind it (`web.jobs.video`, `esrgan.io.resumable`) forgets a changed job's segments."""

from __future__ import annotations

import io
import json
import os
import signal
import time

import pytest

from esrgan.errors import Cancelled
from esrgan.io.resumable import WorkStore
from esrgan.video.probe import probe
from tests.conftest import wait_until
from tests.hooks import Hooks
from tests.media import halves, packets, write_clip
from tests.test_restart import job_state, post_job, start_server
from web.jobs.storage import FileStore, new_id
from web.jobs.video import VideoSettings, run_video, segment_files

FRAMES = 24  # 2 s at 12 fps with x264's default keyframe interval: one keyframe
MODEL = "realesrgan-x4plus-anime"  # an RRDBNet: slow enough per frame to be killed mid-video
# Estimated work a segment holds: far below any frame's estimate (the tests' slept steps are not in
# it, and a fast CPU's estimate is small), so every frame is a segment of its own: 24 segments.
SEGMENT_WORK_S = "0.000001"
KILL_AT = 0.4  # the share of the plan's segments finished when the server is killed


def finished_segments(folder, job_id: str) -> list[str]:
    """The segments a job has finished so far (units of its store in ``<id>_work/``)."""
    return sorted(p.name for p in (folder / f"{job_id}_work").glob("segment-*.unit"))


def recorded_plan(folder, job_id: str) -> list:
    """The segment plan kept in the job's record ([] before the job has planned)."""
    try:
        return json.loads((folder / f"{job_id}.json").read_text()).get("media", {}).get("plan") or []
    except (OSError, ValueError):
        return []


def post_clip(base: str, data: bytes) -> str:
    return post_job(base, data, MODEL, scale="2", filename="clip.mp4", content_type="video/mp4")


def seconds(path) -> list:
    info = probe(path)
    return [(p - info.pts[0]) * info.time_base for p in info.pts]


def test_a_one_keyframe_clip_killed_at_40_percent_resumes_from_its_last_finished_segment(tmp_path, weights_dir,
                                                                                          monkeypatch):
    monkeypatch.setenv("REMASTER_VIDEO_SEGMENT_SECONDS", SEGMENT_WORK_S)
    monkeypatch.setenv("REMASTER_VIDEO_PREVIEW_FRAMES", "0")
    folder = tmp_path / "uploads"
    clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=FRAMES, gop=250)
    assert len(probe(clip).keyframes) == 1
    # Each network step sleeps too (the tests' hook, not in the estimate): the job is still running
    # when 40% of its segments are seen finished.
    process, base = start_server(folder, weights_dir, tmp_path / "first.log", Hooks(delay=0.05))
    try:
        job_id = post_clip(base, clip.read_bytes())
        wait_until(lambda: recorded_plan(folder, job_id), 240, "the segment plan")
        plan = recorded_plan(folder, job_id)
        assert len(plan) >= 4 and sum(frames for _, _, frames in plan) == FRAMES
        wait_until(lambda: len(finished_segments(folder, job_id)) >= KILL_AT * len(plan), 240, "40% of the segments")
        assert job_state(base, job_id)["status"] == "running"
    finally:
        os.kill(process.pid, signal.SIGKILL)  # no chance to clean up
        process.wait(10)
    kept = finished_segments(folder, job_id)
    assert len(plan) > len(kept) >= KILL_AT * len(plan)
    # Restarted without the slow steps: its estimates differ, the recorded plan (and the store) stay.
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
    assert seconds(out) == seconds(clip)  # every timestamp, as an uninterrupted run keeps them
    redone = (tmp_path / "second.log").read_text().count("done by the job's own process")
    assert redone == len(plan) - len(kept)  # only the segments the killed server had not finished
    assert state["result"]["provenance"]["segments"] == ["server"] * len(plan)
    assert not (folder / f"{job_id}_work").exists() and not list(folder.glob(f"{job_id}_segment*"))


def test_a_changed_job_never_resumes_from_stale_segments_and_a_cancel_deletes_them(make_app, tmp_path):
    """In one process (the engine for real, no server): a stopped run keeps its first segment; the
    same job asked with another CRF starts from frame 0 in an emptied store; a cancel leaves nothing."""
    app = make_app(PRECISION="fp32", WORKERS=0, VIDEO_SEGMENT_SECONDS=0.5, VIDEO_PREVIEW_FRAMES=0)
    clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=12)  # two segments of 6 frames
    form = {"scale": "2", "file": (io.BytesIO(clip.read_bytes()), "clip.mp4")}
    job_id = app.test_client().post("/api/jobs", data=form, content_type="multipart/form-data").get_json()["id"]
    service = app.extensions["remaster"]
    job, files, upscaler = service.runner.get(job_id), service.files, service.upscaler
    job.media = {**job.media, "plan": halves(files.resolve(job.input_file))}
    settings = VideoSettings(segment_seconds=0.5, preview_frames=0)

    def run(stop, seen: list[int]) -> None:
        run_video(job, upscaler, files, settings, lambda done, _total: seen.append(done), lambda _stage: None, stop)

    with pytest.raises(Cancelled):  # a stop (the server going down) after the first segment
        run(lambda: bool(segment_files(files, job)), [])
    stale = segment_files(files, job)
    assert len(stale) == 1
    job.media = {**job.media, "encode": {**(job.media["encode"] or {}), "crf": 30}}
    with pytest.raises(Cancelled):
        run(lambda: segment_files(files, job) not in ([], stale), seen := [])
    assert min(seen[1:]) == 1  # the first segment upscaled again: its frames count from 1
    assert len(segment_files(files, job)) == 1 and segment_files(files, job) != stale
    job.cancel_requested = True
    with pytest.raises(Cancelled):
        run(lambda: True, [])
    assert not files.work_dir(job.id).exists()
    assert sorted(p.name for p in files.root.iterdir() if p.name.startswith(job_id)) == [
        f"{job_id}.json", f"{job_id}_in.mp4"]


def test_helpers_join_the_store_the_job_opened_and_never_make_or_empty_one(tmp_path):
    folder = tmp_path / "job_work"
    assert WorkStore.join(folder, {"crf": 18}) is None and not folder.exists()  # nothing opened yet
    owner = WorkStore.open(folder, {"crf": 18})
    (folder / "segment-00000-of-00002-x.unit").write_bytes(b"frames")
    helper = WorkStore.join(folder, {"crf": 18})
    assert helper is not None and helper.tag == owner.tag and len(owner.tag) == 12
    assert WorkStore.join(folder, {"crf": 30}) is None  # another work: it adds nothing
    assert helper.names() == ["segment-00000-of-00002-x"]  # and emptied nothing
    assert WorkStore.open(folder, {"crf": 30}).tag != owner.tag and owner.names() == []


def test_a_dead_runs_segment_store_expires_with_its_job(tmp_path):
    """What a killed process left in a job's store (units, a claim, a half-written part) stays while
    the job may resume and goes with the job's files once it has ended and expired."""
    files = FileStore(tmp_path / "uploads", ttl_seconds=60)
    job_id = new_id()
    store = WorkStore.open(files.work_dir(job_id), {"work": "video-segments"})
    store.save_json("by-segment-00000-of-00002-x", {"worker": "alpha@test"})
    (store.folder / "segment-00001-of-00002-x.unit.claim").write_text("3 beta@test")
    (store.folder / ".segment-00001-of-00002-x.unit.abc.part").write_bytes(b"half")
    files.save_record(job_id, {"id": job_id, "status": "running"})
    assert files.sweep(now=time.time() + 10 * 60) == 0 and store.folder.is_dir()  # it may resume
    files.save_record(job_id, {"id": job_id, "status": "failed", "finished_at": time.time()})
    assert files.sweep(now=time.time() + 61) == 5 and list(files.root.iterdir()) == []  # 4 in the store, the record
