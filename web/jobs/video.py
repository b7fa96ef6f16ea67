"""Running a video or animation job: a quick preview of the first frames, then every frame in
segments of about ``segment_seconds`` of estimated work each (cut at any frame), joined losslessly
into the result (`esrgan.video`). The plan is made once per job and kept in its record
(``job.media["plan"]``): a run after a restart, or a helper, uses that plan even where the
estimates have changed since, so the finished segments stay valid.

`web.jobs.lifecycle.run_job` calls `run_video` for a job whose kind is not "image" and ends the job by
what it raises, as for an image. Finished segments are the units of the job's segment store (an
`esrgan.io.resumable.WorkStore` in the job's work folder, ``<job id>_work/``), whose identity is
everything that decides the result (`segment_identity`: model, scale, noise, the engine's precision
and tiling, the encoder's options, the input's digest, the segment plan). A run that was stopped or
killed resumes there: a segment whose unit exists is complete and is not upscaled again; a changed
job finds the store emptied. A cancel or a failure deletes the store; a stop (the server shutting down) keeps it
for the next run; the job's end removes it (so do `web.jobs.lifecycle.finish` and the files' expiry,
`web.jobs.storage`, for whatever a dead process left).

The job's process owns the store (`segment_store` opens it); Celery workers that help with its
segments (`web.worker.video_tasks`) only join it and add units (`esrgan.io.resumable`: several writers).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from esrgan.errors import Cancelled
from esrgan.io.resumable import WorkStore, work_identity
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.video.animated import upscale_animation
from esrgan.video.frames import frame_upscaler
from esrgan.video.options import EncodeOptions, VideoLimits, VideoWork
from esrgan.video.probe import VideoInfo, probe
from esrgan.video.segments import (
    Segment,
    join_segments,
    plan_rows,
    plan_segments,
    preview_segment,
    segments_from_rows,
    upscale_segment,
)
from web.jobs import segment_claims as claims
from web.jobs.record import Job
from web.jobs.storage import FileStore

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
StageFn = Callable[[str], None]
StopFn = Callable[[], bool]
ShareFn = Callable[[Job, list[int]], None]

# Limits were checked when the job was made; running it again (after a restart) must not refuse it
# because a limit changed since.
NO_LIMITS = VideoLimits(max_seconds=float("inf"), max_frames=2**62, max_input_pixels=2**62,
                        max_output_pixels=2**62)
PREVIEW_EXT = "mp4"
WAIT_POLL_S = 0.5  # how often the job's process looks at segments other workers hold
LOCAL_WORKER = "server"  # who the job's process says it is when it has no worker name (in-process runner)
_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime) -> sha256: `input_digest`


@dataclass(frozen=True)
class VideoSettings:
    """How video jobs run here (from the app's config: `video_settings`).

    Attributes:
        segment_seconds: Estimated work (seconds here) of each segment a video is upscaled in.
        preview_frames: Frames in the quick preview (0: none).
        preview_min_seconds: Videos expected to take at least this long get a preview first.
        stale_seconds: A segment's claim not touched for this long belongs to a dead process.
        share: Offers a job's unfinished segments (by index) to other workers (a Celery worker
            sets it: `web.worker.video_tasks`); None: this process upscales them all.
    """

    segment_seconds: float = 10.0
    preview_frames: int = 12
    preview_min_seconds: float = 4.0
    stale_seconds: float = 30.0
    share: ShareFn | None = None


def video_settings(config: Mapping) -> VideoSettings:
    return VideoSettings(float(config["VIDEO_SEGMENT_SECONDS"]), int(config["VIDEO_PREVIEW_FRAMES"]),
                         float(config["PREVIEW_MIN_SECONDS"]), float(config["VIDEO_STALE_SECONDS"]))


def job_segments(job: Job, info: VideoInfo, settings: VideoSettings, upscaler: Upscaler | None = None) -> list[Segment]:
    """The job's segment plan: the one in its record, else made now (from the job's estimate of its
    upscaling, or ``upscaler``'s) and put there, to be saved with the record's next change."""
    rows = (job.media or {}).get("plan")
    if rows:
        return segments_from_rows(info, rows)
    segments = plan_segments(info, _seconds_per_frame(job, info, upscaler), settings.segment_seconds)
    job.media = {**(job.media or {}), "plan": plan_rows(segments)}
    return segments


def _seconds_per_frame(job: Job, info: VideoInfo, upscaler: Upscaler | None) -> float:
    if job.estimate_seconds:
        return job.estimate_seconds / max(1, info.frames)
    try:
        return upscaler.estimate_seconds(job.model, info.width, info.height) if upscaler is not None else 0.0
    except Exception:  # no estimate: one segment, as a clip with no rates known
        log.warning("no estimate to plan the segments of job %s", job.id, exc_info=True)
        return 0.0


def segment_identity(job: Job, info: VideoInfo, segments: list[Segment], engine: Settings) -> dict:
    """What decides a job's segments: a store opened with another identity starts empty. Every
    segment plans its own tiles, so the tile size counts too; the plan (kept in the job's record)
    decides where each segment starts and ends."""
    return work_identity("video-segments", engine, model=job.model, anime=job.anime, scale=job.scale,
                         noise=job.noise, tile=engine.tile, encode=asdict(encode_options(job)),
                         input=input_digest(info.path), plan=plan_rows(segments))


def segment_store(files: FileStore, job: Job, info: VideoInfo, segments: list[Segment], engine: Settings,
                  owner: bool = True) -> WorkStore | None:
    """The job's segment store: opened (created, or emptied for changed work) by the job's own
    process (``owner``); joined by a helper, None when the job's process has not opened it for
    the same work (`esrgan.io.resumable.WorkStore.join`)."""
    folder, identity = files.work_dir(job.id), segment_identity(job, info, segments, engine)
    return WorkStore.open(folder, identity) if owner else WorkStore.join(folder, identity)


def segment_part(store: WorkStore, segment: Segment) -> Path:
    """Where ``segment``'s encoded file lies once finished (its unit in ``store``)."""
    return store.path(f"{Path(segment.file_name).stem}-{store.tag}")


def segment_files(files: FileStore, job: Job) -> list[Path]:
    """The job's finished segments kept so far (of any work: for tests and tidying)."""
    return sorted(files.work_dir(job.id).glob("segment-*.unit"))


def finish_segment(store: WorkStore, segment: Segment, worker: str) -> None:
    """Record who upscaled ``segment`` (after its part is in place), for the job's provenance; a
    courtesy (the store may be gone already: the job ended while a helper finished)."""
    try:
        store.save_json(f"by-{segment_part(store, segment).stem}", {"worker": worker})
    except OSError as exc:
        log.warning("could not record who upscaled segment %d: %s", segment.index, exc)


def segment_workers(store: WorkStore, segments: list[Segment]) -> list[str | None]:
    """Who upscaled each segment (None: not recorded)."""
    names = []
    for segment in segments:
        try:
            names.append(store.load_json(f"by-{segment_part(store, segment).stem}")["worker"])
        except (OSError, ValueError, KeyError, TypeError):
            names.append(None)
    return names


def input_digest(path: Path) -> str:
    """The sha256 of a file, remembered while its size and time stamp stay (a helper hashes an input
    once per job, not once per segment)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        with open(path, "rb") as handle:
            _DIGESTS.clear()  # one input at a time is all a worker needs
            _DIGESTS[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _DIGESTS[key]


def encode_options(job: Job) -> EncodeOptions:
    return EncodeOptions(**((job.media or {}).get("encode") or {}))


def run_video(job: Job, upscaler: Upscaler, files: FileStore, settings: VideoSettings, progress: ProgressFn,
              stage: StageFn, stop_requested: StopFn) -> None:
    """Upscale the job's video or animation into its output file (set on ``job`` with the result's
    facts in ``job.media["result"]``). Raises what the engine raises (`Cancelled` on a stop)."""
    source = files.resolve(job.input_file)
    fn = frame_upscaler(upscaler, job.scale, model=job.model, noise=job.noise, anime=job.anime,
                        cancelled=stop_requested, tta=job.tta)
    output = files.path(job.id, "out", job.output_format)
    media = job.media or {}
    if job.kind == "animation":
        progress(0, job.frames)  # counted in frames from the stage's first look
        stage("upscaling")
        as_video = media.get("as_video", False)
        work = VideoWork(fn, job.scale, encode_options(job), NO_LIMITS, progress=progress, cancelled=stop_requested)
        result = upscale_animation(source, output, work, "video" if as_video else "same")
        _done(job, output, result.as_dict(), result.width, result.height)
        return
    info = probe(source, NO_LIMITS)
    options = encode_options(job)
    segments = job_segments(job, info, settings, upscaler)
    store = segment_store(files, job, info, segments, upscaler.settings)
    try:
        frames = settings.preview_frames
        if (job.estimate_seconds or 0) >= settings.preview_min_seconds and info.frames > frames > 0:
            _preview(job, info, fn, files, options, frames, stage, stop_requested)
        progress(0, info.frames)
        stage("upscaling")
        _upscale_segments(job, info, segments, fn, store, options, settings, progress, stop_requested)
        stage("encoding")
        result = join_segments(info, [segment_part(store, s) for s in segments], output, options, scale=job.scale)
        workers = segment_workers(store, segments)
    except BaseException as exc:
        if not (isinstance(exc, Cancelled) and not job.cancel_requested):  # a stop keeps them, to resume
            store.delete()
        raise
    store.delete()
    _done(job, output, result.as_dict(), result.width, result.height)
    job.provenance["segments"] = workers


def _upscale_segments(job: Job, info: VideoInfo, segments: list[Segment], fn, store: WorkStore,
                      options: EncodeOptions, settings: VideoSettings, progress: ProgressFn,
                      stop_requested: StopFn) -> None:
    """Every segment whose part is not there yet (a resumed run skips the finished ones). Segments
    other processes hold (`web.jobs.segment_claims`) are left to them and waited for; one whose holder
    died is taken over."""
    parts = {s.index: segment_part(store, s) for s in segments}
    me = job.worker or LOCAL_WORKER
    if settings.share is None:  # no other process works on this job: a claim left here is a dead run's
        for part in parts.values():
            claims.release(part)
    else:
        settings.share(job, [s.index for s in segments if not parts[s.index].is_file()])
    while True:
        waiting = False
        for segment in segments:
            part = parts[segment.index]
            if part.is_file():
                continue
            if not claims.claim(part, settings.stale_seconds, me):
                waiting = True
                continue
            with claims.holding(part, settings.stale_seconds):
                before = _frames_seen(segments, parts, mine=segment.index)

                def step(done: int, _total: int, part=part, before=before) -> None:
                    claims.report(part, done, me)
                    progress(before + done, info.frames)

                work = VideoWork(fn, job.scale, options, NO_LIMITS, progress=step, cancelled=stop_requested)
                upscale_segment(info, segment, part, work)
            finish_segment(store, segment, me)
            log.info("segment %d of job %s done by the job's own process", segment.index, job.id)
        progress(_frames_seen(segments, parts), info.frames)  # the last pass's too: every frame counted
        if not waiting:
            return
        if stop_requested():
            raise Cancelled("stopped while other workers upscale its segments")
        time.sleep(WAIT_POLL_S)


def _frames_seen(segments: list[Segment], parts: dict[int, Path], mine: int | None = None) -> int:
    """Frames done so far by every process: finished segments, and those others hold as they say."""
    return sum(s.frames if parts[s.index].is_file() else 0 if s.index == mine
               else claims.frames_in_progress(parts[s.index]) for s in segments)


def _preview(job: Job, info: VideoInfo, fn, files: FileStore, options: EncodeOptions, frames: int,
             stage: StageFn, stop_requested: StopFn) -> None:
    """The first frames upscaled into the job's preview (a short MP4, no sound); no preview is no failure."""
    stage("previewing")
    path = files.path(job.id, "preview", PREVIEW_EXT)
    try:
        preview = EncodeOptions(codec="h264", container="mp4", crf=options.crf if options.codec == "h264" else None)
        upscale_segment(info, preview_segment(info, frames), path,
                        VideoWork(fn, job.scale, preview, NO_LIMITS, cancelled=stop_requested))
    except Cancelled:
        raise
    except Exception as exc:  # a preview is a courtesy
        log.warning("no preview for job %s: %s", job.id, exc)
        return
    job.preview_file = path.name


def _done(job: Job, output: Path, facts: dict, width: int, height: int) -> None:
    facts.pop("path", None)
    job.output_file = output.name
    job.output_width, job.output_height = width, height
    job.media = {**(job.media or {}), "result": facts}
    job.upscale_seconds = round(time.time() - (job.upscale_started_at or job.started_at or time.time()), 3)
    job.provenance = {"model": job.model, "scale": job.scale, "kind": job.kind, "frames": facts.get("frames")}
