"""One job's life, written once: its states, and the work that moves it between them.

    queued ──start──> running ──┬──> done
       │  ^                     ├──> failed     (bad input, engine error, lost input, gave up)
       │  └── server stopped ───┤
       └──cancel──> cancelled <─┘ (cancel: stops within one network step)

Every transition is persisted atomically with the record (`FileStore.save_record`), so a job is
plain data that any process can read: the in-process runner and a Celery worker both move a job
with `run_job`, and a restarted server (or a worker given a job whose first worker died) decides
with `recover`. A record never says ``running`` unless a process is running it: what an
interrupted process left running is queued again, or failed with a reason. A failed job records
the kind of its failure (`web.errors.ErrorKind`), never an HTTP status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from esrgan.errors import Cancelled, RemasterError
from esrgan.io.imageio import decode as decode_image
from esrgan.io.imageio import encode
from esrgan.pipeline import Upscaler
from web import figures
from web.errors import ErrorKind, error_kind
from web.jobs.compare import COMPARE, run_compare
from web.jobs.estimate import work_seconds
from web.jobs.preview import make_preview, wants_preview
from web.jobs.record import FINISHED, Job, Status
from web.jobs.storage import FileStore
from web.jobs.video import VideoSettings, run_video

log = logging.getLogger(__name__)

__all__ = ["FINISHED", "Job", "JobResources", "finish", "load_job", "persist", "recover", "run_job", "start"]

MAX_ATTEMPTS = 2  # runs of one job that a crash may interrupt before it is failed for good
REPORT_INTERVAL = 0.4  # seconds between progress reports to other processes (workers)


@dataclass
class JobResources:
    """What running a job needs, built the same way by every process that runs jobs.

    Attributes:
        upscaler: The engine (its models load once and stay; it learns its rates from its runs).
        files: Where the input, the outputs and the record live.
        preview_min_seconds: Jobs expected to take longer than this get a quick preview first.
        worker: A name for the record, e.g. the Celery worker's.
    """

    upscaler: Upscaler
    files: FileStore
    preview_min_seconds: float
    worker: str | None = None
    video: VideoSettings = VideoSettings()

    def estimate(self, job: Job) -> float | None:
        """Seconds the upscaling of ``job`` should take here (None when it cannot be told)."""
        try:
            return figures.seconds(work_seconds(job, self.upscaler.estimate_seconds))
        except Exception:  # an estimate is a courtesy; the job itself reports real errors
            log.warning("no estimate for job %s", job.id, exc_info=True)
            return None


Report = Callable[[Job], None]


def load_job(files: FileStore, job_id: str) -> Job | None:
    """The job whose record is in ``files``; None when there is none (or it is not one of ours)."""
    record = files.load_record(job_id)
    if record is None:
        return None
    try:
        return Job.from_dict(record)
    except ValueError:
        log.warning("the record of job %s is damaged; treating it as gone", job_id)
        return None


def persist(files: FileStore, job: Job) -> None:
    """Write the record atomically; a full disk is logged, the job lives on in memory."""
    try:
        files.save_record(job.id, job.as_dict())
    except OSError:
        log.exception("could not save the record of job %s", job.id)


def set_stage(files: FileStore, job: Job, stage: str) -> None:
    job.stage, job.stage_started_at = stage, time.time()
    if stage == "upscaling":
        job.upscale_started_at = job.stage_started_at
        job.steps_done = 0
    persist(files, job)


def start(files: FileStore, job: Job, worker: str | None = None) -> Job:
    """queued -> running."""
    job.status, job.stage, job.worker = "running", "loading", worker
    job.started_at = job.stage_started_at = time.time()
    job.attempts += 1
    job.steps_done = job.steps_total = 0
    job.upscale_started_at = None
    persist(files, job)
    return job


def requeue(files: FileStore, job: Job) -> Job:
    """running -> queued: its process stopped (or died) before it ended; the run starts again,
    from the tiles it had finished (kept in `FileStore.work_dir`)."""
    if job.preview_file is not None:
        files.delete(job.preview_file)
    job.status = job.stage = "queued"
    job.restarts += 1
    job.eta_shown = None
    job.started_at = job.stage_started_at = job.upscale_started_at = job.preview_file = None
    job.steps_done = job.steps_total = 0
    persist(files, job)
    return job


def finish(files: FileStore, job: Job, status: Status, error: str | None = None,
           kind: ErrorKind | None = None) -> Job:
    """-> done | failed | cancelled, with what went wrong and its kind; a preview never outlives its job."""
    if job.preview_file is not None:  # first: a reader that sees the job finished sees no preview
        files.delete(job.preview_file)
        job.preview_file = None
    files.delete_work(job.id)  # a finished job resumes nothing
    ending = {"status": status, "stage": status, "finished_at": time.time(), "error": error, "error_kind": kind}
    persist(files, replace(job, **ending))  # on disk first: whoever sees the job finished finds its record
    for name, value in ending.items():
        setattr(job, name, value)
    return job


def run_job(job: Job, resources: JobResources, *, cancelled: Callable[[], bool] = lambda: False,
            interrupted: Callable[[], bool] = lambda: False, report: Report | None = None) -> Job:
    """Run a queued (or just started) job to its end, persisting every transition; never raises
    for a job's fault.

    Args:
        job: A queued job whose input is in ``resources.files``, or one `start` has just moved to running.
        resources: The engine and the files of this process.
        cancelled: Polled at every network step: True when someone asked to cancel the job (it
            then ends ``cancelled``).
        interrupted: Polled likewise: True when this process is stopping (the job then goes back
            to ``queued``, to run again at the next start).
        report: Called (throttled) as progress moves, e.g. to publish it to other processes.
    """
    files = resources.files
    if job.status == "queued":
        start(files, job, resources.worker)
    last_report = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_report
        job.steps_done, job.steps_total = done, total
        if report is not None and (time.monotonic() - last_report >= REPORT_INTERVAL or done == total):
            last_report = time.monotonic()
            report(job)

    def stage(name: str) -> None:
        if name == "upscaling":  # the runtime is known now: a better estimate than at submission
            job.estimate_seconds = resources.estimate(job) or job.estimate_seconds
        set_stage(files, job, name)

    def stop_requested() -> bool:
        if not job.cancel_requested and cancelled():
            job.cancel_requested = True
        return job.cancel_requested or interrupted()

    try:
        if job.kind == COMPARE:  # several models on a crop (`web.jobs.compare`); it fails the same ways
            run_compare(job, resources.upscaler, files, progress, stage, stop_requested)
            return finish(files, job, "done")
        if job.kind != "image":  # a video or an animation (`web.jobs.video`); it fails the same ways
            run_video(job, resources.upscaler, files, resources.video, progress, stage, stop_requested)
            return finish(files, job, "done")
        image = decode_image(files.read(job.input_file), max_pixels=None)
        if wants_preview(job, resources.preview_min_seconds):
            _preview(job, image, resources, stop_requested)
        # Finished tiles are kept in the job's folder: after a crash the adopted job resumes there.
        result = resources.upscaler.upscale(image, job.scale, job.anime, job.model, progress=progress,
                                            cancelled=stop_requested, stage=stage,
                                            checkpoint=files.work_dir(job.id), tta=job.tta, faces=job.faces,
                                            **_noise(job))
        if stop_requested():
            raise Cancelled("stopped on request")
        job.upscale_seconds = round(time.time() - (job.upscale_started_at or job.started_at), 3)
        set_stage(files, job, "encoding")
        data = encode(result.image, job.output_format, job.quality, keep_gps=job.keep_gps)
        job.output_file = files.write(job.id, "out", job.output_format, data)
    except Cancelled:
        if job.cancel_requested:
            return finish(files, job, "cancelled", "cancelled", "conflict")
        log.info("job %s interrupted by a stop; it runs again at the next start", job.id)
        job.attempts -= 1  # a clean stop is not the job's fault
        return requeue(files, job)
    except FileNotFoundError:
        return finish(files, job, "failed", "the uploaded image is gone (expired or deleted)", "expired")
    except RemasterError as exc:
        return finish(files, job, "failed", str(exc), error_kind(exc))
    except OSError as exc:
        log.exception("job %s could not be stored", job.id)
        return finish(files, job, "failed", f"the server could not store the result ({exc.strerror})", "disk_full")
    except Exception:  # a bug fails one job, never the worker
        log.exception("job %s failed unexpectedly", job.id)
        return finish(files, job, "failed", "internal error while upscaling", "internal")
    job.output_width, job.output_height = result.image.width, result.image.height
    job.provenance = result.provenance.as_dict()
    return finish(files, job, "done")


def _noise(job: Job) -> dict:
    """The engine's noise reduction, passed only when asked for."""
    return {"noise": job.noise} if job.noise not in (None, "none") else {}


def _preview(job: Job, image, resources: JobResources, stop_requested: Callable[[], bool]) -> None:
    """Make the job's quick preview (`web.jobs.preview`), saying so in its stage; no preview is no failure."""
    files = resources.files
    set_stage(files, job, "previewing")

    def stage(name: str) -> None:  # the one-time CPU measurement may come first: say so
        set_stage(files, job, {"upscaling": "previewing"}.get(name, name))

    try:
        job.preview_file = make_preview(job, image, resources.upscaler, files, stop_requested, stage)
    except Cancelled:
        raise
    except (RemasterError, OSError) as exc:
        log.warning("no preview for job %s: %s", job.id, exc)
    persist(files, job)


def recover(files: FileStore, job: Job) -> bool:
    """Decide what becomes of a job an earlier process (or a dead worker) left unfinished. Returns
    True when the job should run again (its record then says ``queued``); else it is finished here,
    with a reason a person understands."""
    if job.finished:
        return False
    if job.status == "running":  # the process that ran it is gone: a write it was killed in is left half done
        files.delete_temporaries(job.id)
    if job.cancel_requested:
        finish(files, job, "cancelled", "cancelled", "conflict")
        return False
    if not files.exists(job.input_file):
        finish(files, job, "failed", "the uploaded image is gone (expired or deleted); upload it again", "expired")
        return False
    if job.attempts >= MAX_ATTEMPTS:
        finish(files, job, "failed", f"the server (or the worker) running this job stopped {job.attempts} times "
               "during it; it is not tried again (try a smaller image or scale)", "internal")
        return False
    if job.status != "queued":
        requeue(files, job)
    job.eta_shown = None  # what an earlier process showed is no bound on this one
    return True
