"""A video spread over Celery workers: the worker running a video job offers its unfinished
segments to the others (one task per segment), each upscales what it can claim, and the job's
worker waits for the rest, joins them losslessly and ends the job (`web.jobs.video`).

Segments are claimed through the shared upload folder (`web.jobs.segment_claims`), so a segment is
upscaled once however many tasks name it; a worker killed mid-segment leaves a claim that goes
stale, and the job's worker (or the redelivered task) takes that segment over: only it is lost.

A helper never opens the job's segment store: it joins the store the job's worker opened
(`web.jobs.video.segment_store` with ``owner=False``) and only adds units, named with the store's
tag; a helper whose own identity of the work differs (other engine settings, or a job that
changed since the task was sent) joins nothing and leaves the segment to the job's worker.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from celery import Celery, Task

from esrgan.video.frames import frame_upscaler
from esrgan.video.options import EncodeOptions, VideoWork
from esrgan.video.probe import probe
from esrgan.video.segments import segments_from_rows, upscale_segment
from web.jobs import segment_claims as claims
from web.jobs.lifecycle import load_job
from web.jobs.record import FINISHED, Job
from web.jobs.video import LOCAL_WORKER, NO_LIMITS, encode_options, finish_segment, segment_part, segment_store
from web.runners.celery_app import CANCEL_KEY
from web.service import services

log = logging.getLogger(__name__)

SEGMENT_TASK = "remaster.video_segment"


def share_segments(celery: Celery, queue: str | None = None):
    """The `VideoSettings.share` of a Celery worker: one segment task per unfinished segment."""

    def share(job: Job, indices: list[int]) -> None:
        for index in indices:
            celery.send_task(SEGMENT_TASK, args=(job.id, index), queue=queue)

    return share


def enable_video_tasks(celery: Celery, queue: str | None = None) -> None:
    """Register the segment task and let this worker's video jobs share their segments (call in
    the worker's app context)."""
    celery.task(name=SEGMENT_TASK, bind=True)(segment_task)
    resources = services().job_resources
    resources.video = replace(resources.video, share=share_segments(celery, queue))


def segment_task(self: Task, job_id: str, index: int) -> dict:
    """Upscale one segment of a video job, unless it is done, held by a live worker, or the job
    has ended."""
    resources = services().job_resources
    files = resources.files
    redis = self.app.backend.client
    job = load_job(files, job_id)
    if job is None or job.status in FINISHED or job.kind != "video":
        return {"job": job_id, "segment": index, "done": False}
    rows = (job.media or {}).get("plan")
    if not rows:  # the job's worker saves the plan before it shares any segment
        return {"job": job_id, "segment": index, "done": False, "error": "the job has no segment plan"}
    info = probe(files.resolve(job.input_file), NO_LIMITS)
    segments = segments_from_rows(info, rows)  # the job's own plan, whatever the estimates say here
    if index >= len(segments):
        return {"job": job_id, "segment": index, "done": False}
    segment = segments[index]
    store = segment_store(files, job, info, segments, resources.upscaler.settings, owner=False)
    if store is None:  # not (or no longer) the work this worker would do
        return {"job": job_id, "segment": index, "done": False, "error": "not the job's current segment work"}
    part = segment_part(store, segment)
    me = resources.worker or LOCAL_WORKER
    if not claims.claim(part, resources.video.stale_seconds, me):
        return {"job": job_id, "segment": index, "done": part.is_file()}

    def stopped() -> bool:
        current = load_job(files, job_id)
        return current is None or current.status in FINISHED or bool(redis.exists(CANCEL_KEY.format(job_id)))

    fn = frame_upscaler(resources.upscaler, job.scale, model=job.model, noise=job.noise, anime=job.anime,
                        cancelled=stopped, tta=job.tta)
    options: EncodeOptions = encode_options(job)
    with claims.holding(part, resources.video.stale_seconds):
        try:
            upscale_segment(info, segment, part, VideoWork(fn, job.scale, options, NO_LIMITS, cancelled=stopped,
                                                           progress=lambda done, _total: claims.report(part, done, me)))
        except Exception as exc:  # the job's own worker meets the same segment and ends the job with it
            log.warning("segment %d of job %s: %s", index, job_id, exc)
            return {"job": job_id, "segment": index, "done": False, "error": str(exc)}
    finish_segment(store, segment, me)
    log.info("segment %d of job %s done by %s", index, job_id, resources.worker)
    return {"job": job_id, "segment": index, "done": True, "worker": resources.worker}
