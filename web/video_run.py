"""Running a video or animation job: a quick preview of the first frames, then every frame in
keyframe-aligned segments, joined losslessly into the result (`esrgan.video`).

`web.lifecycle.run_job` calls `run_moving` for a job whose kind is not "image" and ends the job by
what it raises, as for an image. Each segment is its own file in the job folder
(``<job id>_segment-NNNNN-of-NNNNN.mp4``, written atomically), so a run that was stopped or
killed resumes: a segment whose file exists is complete and is not upscaled again. A cancel or a
failure deletes them; a stop (the server shutting down) keeps them for the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from esrgan.errors import Cancelled
from esrgan.pipeline import Upscaler
from esrgan.video import (
    EncodeOptions,
    Segment,
    VideoInfo,
    frame_upscaler,
    join_segments,
    plan_segments,
    preview_segment,
    probe,
    upscale_animation,
    upscale_segment,
)
from esrgan.video.options import VideoLimits
from web import segment_claims as claims
from web.job import Job
from web.storage import FileStore

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


@dataclass(frozen=True)
class VideoSettings:
    """How video jobs run here (from the app's config: `video_settings`).

    Attributes:
        segment_seconds: Length of the keyframe-aligned segments a video is upscaled in.
        preview_frames: Frames in the quick preview (0: none).
        preview_min_seconds: Videos expected to take at least this long get a preview first.
        stale_seconds: A segment's claim not touched for this long belongs to a dead process.
        share: Offers a job's unfinished segments (by index) to other workers (a Celery worker
            sets it: `web.video_tasks`); None: this process upscales them all.
    """

    segment_seconds: float = 10.0
    preview_frames: int = 12
    preview_min_seconds: float = 4.0
    stale_seconds: float = 30.0
    share: ShareFn | None = None


def video_settings(config: Mapping) -> VideoSettings:
    return VideoSettings(float(config["VIDEO_SEGMENT_SECONDS"]), int(config["VIDEO_PREVIEW_FRAMES"]),
                         float(config["PREVIEW_MIN_SECONDS"]), float(config["VIDEO_STALE_SECONDS"]))


def segment_path(files: FileStore, job: Job, segment: Segment) -> Path:
    """Where a segment of ``job`` is kept while the job runs (never served)."""
    return files.root / f"{job.id}_{segment.file_name}"


def segment_files(files: FileStore, job: Job) -> list[Path]:
    return sorted(files.root.glob(f"{job.id}_segment-*"))


def encode_options(job: Job) -> EncodeOptions:
    return EncodeOptions(**((job.media or {}).get("encode") or {}))


def run_moving(job: Job, upscaler: Upscaler, files: FileStore, settings: VideoSettings, progress: ProgressFn,
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
        result = upscale_animation(source, output, fn, job.scale, "video" if as_video else "same",
                                   encode_options(job), NO_LIMITS, progress=progress, cancelled=stop_requested)
        _done(job, output, result.as_dict(), result.width, result.height)
        return
    info = probe(source, NO_LIMITS)
    options = encode_options(job)
    segments = plan_segments(info, settings.segment_seconds)
    try:
        frames = settings.preview_frames
        if (job.estimate_seconds or 0) >= settings.preview_min_seconds and info.frames > frames > 0:
            _preview(job, info, fn, files, options, frames, stage, stop_requested)
        progress(0, info.frames)
        stage("upscaling")
        _upscale_segments(job, info, segments, fn, files, options, settings, progress, stop_requested)
        stage("encoding")
        parts = [segment_path(files, job, s) for s in segments]
        result = join_segments(info, parts, output, options, scale=job.scale)
    except BaseException as exc:
        if not (isinstance(exc, Cancelled) and not job.cancel_requested):  # a stop keeps them, to resume
            for part in segment_files(files, job):
                part.unlink(missing_ok=True)
        raise
    for part in parts:
        part.unlink(missing_ok=True)
    _done(job, output, result.as_dict(), result.width, result.height)


def _upscale_segments(job: Job, info: VideoInfo, segments: list[Segment], fn, files: FileStore,
                      options: EncodeOptions, settings: VideoSettings, progress: ProgressFn,
                      stop_requested: StopFn) -> None:
    """Every segment whose file is not there yet (a resumed run skips the finished ones). Segments
    other processes hold (`web.segment_claims`) are left to them and waited for; one whose holder
    died is taken over."""
    parts = {s.index: segment_path(files, job, s) for s in segments}
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
            if not claims.claim(part, settings.stale_seconds):
                waiting = True
                continue
            with claims.holding(part, settings.stale_seconds):
                before = _frames_seen(segments, parts, mine=segment.index)

                def step(done: int, _total: int, part=part, before=before) -> None:
                    claims.report(part, done)
                    progress(before + done, info.frames)

                upscale_segment(info, segment, part, fn, job.scale, options, NO_LIMITS, progress=step,
                                cancelled=stop_requested)
            log.info("segment %d of job %s done by the job's own process", segment.index, job.id)
            progress(_frames_seen(segments, parts), info.frames)
        if not waiting:
            return
        if stop_requested():
            raise Cancelled("stopped while other workers upscale its segments")
        progress(_frames_seen(segments, parts), info.frames)
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
        upscale_segment(info, preview_segment(info, frames), path, fn, job.scale,
                        EncodeOptions(codec="h264", container="mp4", crf=options.crf if options.codec == "h264" else None),
                        NO_LIMITS, cancelled=stop_requested)
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
