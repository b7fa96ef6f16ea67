"""One job's life, written once: its record, its states, and the work that moves it between them.

    queued ──start──> running ──┬──> done
       │                        ├──> failed     (bad input, engine error, lost input, gave up)
       └──cancel──> cancelled <─┘ (cancel: stops within one network step)

Every transition is persisted atomically with the record (`FileStore.save_record`), so a job is
plain data that any process can read: the in-process runner and a Celery worker both move a job
with `run_job`, and a restarted server adopts what it finds with `adopt`. A record never says
``running`` unless a process is running it: the in-process runner re-queues (or fails, with a
reason) what an interrupted process left running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal

from esrgan.errors import Cancelled, RemasterError
from esrgan.imageio import decode as decode_image
from esrgan.imageio import encode
from esrgan.pipeline import Upscaler
from web.errors import http_status
from web.storage import FileStore

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")
FAST_MODEL = "realesr-animevideov3"  # makes the quick preview of a heavy model's job
PREVIEW_MIN_SECONDS = 4.0
PREVIEW_QUALITY = 80  # jobs expected to be quicker than this get no preview
MAX_ATTEMPTS = 2  # runs of one job that a restart may interrupt before it is failed for good
REPORT_INTERVAL = 0.4  # seconds between persisted progress reports (workers)
STAGE_TEXT = {
    "queued": "Waiting for a free worker",
    "calibrating": "Measuring this CPU, once (about half a minute)",
    "loading": "Loading the model",
    "previewing": "Making a quick preview",
    "upscaling": "Upscaling",
    "encoding": "Saving the result",
    "cancelling": "Cancelling...",
    "done": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


@dataclass
class Job:
    """One upscaling request and everything known about it; `as_dict` is its record."""

    id: str
    scale: float
    anime: bool
    model: str | None
    output_format: str
    quality: int
    original_name: str
    input_file: str
    input_width: int
    input_height: int
    output_width: int
    output_height: int
    noise: str | None = None
    status: Status = "queued"
    stage: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    upscale_started_at: float | None = None
    finished_at: float | None = None
    steps_done: int = 0
    steps_total: int = 0
    estimate_seconds: float | None = None  # the upscaling alone, predicted before it starts
    output_file: str | None = None
    preview_file: str | None = None
    provenance: dict | None = None
    error: str | None = None
    error_status: int | None = None
    cancel_requested: bool = False
    attempts: int = 0
    worker: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def fraction(self) -> float:
        if self.status == "done":
            return 1.0
        return self.steps_done / self.steps_total if self.steps_total else 0.0

    @property
    def shown_stage(self) -> str:
        if self.cancel_requested and not self.finished:
            return "cancelling"
        return self.status if self.finished else self.stage

    def elapsed_seconds(self, now: float | None = None) -> float | None:
        if self.started_at is None:
            return None
        return round((self.finished_at or now or time.time()) - self.started_at, 1)

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left: the prediction from this machine's measured rate at first, then the rate
        this job is actually achieving once enough of it is done to tell."""
        if self.finished or self.cancel_requested:
            return None
        now = now or time.time()
        if self.status == "running" and self.upscale_started_at is not None:
            spent = now - self.upscale_started_at
            fraction = self.fraction
            if fraction >= 0.1 and spent > 1.0:
                return round(spent * (1 - fraction) / fraction, 1)
            if self.estimate_seconds is not None:
                return round(max(self.estimate_seconds - spent, 1.0), 1)
            return None
        return None if self.estimate_seconds is None else round(self.estimate_seconds, 1)


Report = Callable[[Job], None]


def persist(files: FileStore, job: Job) -> None:
    """Write the record atomically; a full disk is logged, the job lives on in memory."""
    try:
        files.save_record(job.id, job.as_dict())
    except OSError:
        log.exception("could not save the record of job %s", job.id)


def set_stage(files: FileStore, job: Job, stage: str) -> None:
    job.stage = stage
    if stage == "upscaling":
        job.upscale_started_at = time.time()
        job.steps_done = 0
    persist(files, job)


def start(files: FileStore, job: Job, worker: str | None = None) -> Job:
    """queued -> running."""
    job.status, job.stage, job.started_at, job.worker = "running", "loading", time.time(), worker
    job.attempts += 1
    job.steps_done = job.steps_total = 0
    job.upscale_started_at = None
    persist(files, job)
    return job


def finish(files: FileStore, job: Job, status: Status, error: str | None = None, http: int | None = None) -> Job:
    """-> done | failed | cancelled; a preview never outlives its job."""
    job.status, job.stage, job.finished_at, job.error, job.error_status = status, status, time.time(), error, http
    if job.preview_file is not None:
        files.delete(job.preview_file)
        job.preview_file = None
    persist(files, job)
    return job


def run_job(job: Job, upscaler: Upscaler, files: FileStore, *, cancelled: Callable[[], bool],
            report: Report | None = None, worker: str | None = None) -> Job:
    """Run a queued job to its end, persisting every transition; never raises for a job's fault.

    Args:
        job: A queued job whose input is in ``files``.
        upscaler: The engine.
        files: Where the input, the outputs and the record live.
        cancelled: Polled at every network step; True ends the job ``cancelled``.
        report: Called (throttled) as progress moves, e.g. to publish it to other processes.
        worker: A name for the record, e.g. the Celery worker's.
    """
    start(files, job, worker)
    last_report = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_report
        job.steps_done, job.steps_total = done, total
        if report is not None and (time.monotonic() - last_report >= REPORT_INTERVAL or done == total):
            last_report = time.monotonic()
            report(job)

    def stage(name: str) -> None:
        set_stage(files, job, name)

    is_cancelled = lambda: job.cancel_requested or cancelled()  # noqa: E731
    try:
        image = decode_image(files.read(job.input_file), max_pixels=None)
        _preview(job, image, upscaler, files, is_cancelled)
        result = upscaler.upscale(image, job.scale, job.anime, job.model, progress=progress,
                                  cancelled=is_cancelled, stage=stage, **_noise(job))
        if is_cancelled():
            raise Cancelled("stopped on request")
        set_stage(files, job, "encoding")
        data = encode(result.image, job.output_format, job.quality)
        job.output_file = files.write(job.id, "out", job.output_format, data)
    except Cancelled:
        return finish(files, job, "cancelled", "cancelled", 409)
    except FileNotFoundError:
        return finish(files, job, "failed", "the uploaded image is gone (expired or deleted)", 410)
    except RemasterError as exc:
        return finish(files, job, "failed", str(exc), http_status(exc))
    except OSError as exc:
        log.exception("job %s could not be stored", job.id)
        return finish(files, job, "failed", f"the server could not store the result ({exc.strerror})", 507)
    except Exception:  # a bug fails one job, never the worker
        log.exception("job %s failed unexpectedly", job.id)
        return finish(files, job, "failed", "internal error while upscaling", 500)
    job.output_width, job.output_height = result.image.width, result.image.height
    job.provenance = result.provenance.as_dict()
    return finish(files, job, "done")


def _noise(job: Job) -> dict:
    """The engine takes ``noise`` once noise-reduction models exist; pass it only when asked."""
    return {"noise": job.noise} if job.noise not in (None, "none") else {}


def _preview(job: Job, image, upscaler: Upscaler, files: FileStore, cancelled: Callable[[], bool]) -> None:
    """A quick look at the result from the fast model, while the heavy one works (best effort)."""
    if job.model == FAST_MODEL or (job.estimate_seconds or 0) < PREVIEW_MIN_SECONDS:
        return
    if FAST_MODEL not in upscaler.store.entries():
        return
    set_stage(files, job, "previewing")
    try:
        quick = upscaler.upscale(image, job.scale, model=FAST_MODEL, cancelled=cancelled)
        small = replace(quick.image, bit_depth=8)
        job.preview_file = files.write(job.id, "preview", "jpg", encode(small, "jpg", PREVIEW_QUALITY))
    except Cancelled:
        raise
    except (RemasterError, OSError) as exc:  # no preview is no failure
        log.warning("no preview for job %s: %s", job.id, exc)
    persist(files, job)


def adopt(files: FileStore, job: Job) -> bool:
    """Decide what becomes of a job an earlier process left unfinished. Returns True when the
    job should be queued again (its record then says ``queued``); else it is finished here."""
    if job.finished:
        return False
    if job.cancel_requested:
        finish(files, job, "cancelled", "cancelled", 409)
        return False
    if not files.exists(job.input_file):
        finish(files, job, "failed", "the server restarted and the uploaded image is gone; upload it again", 410)
        return False
    if job.attempts >= MAX_ATTEMPTS:
        finish(files, job, "failed", f"the server stopped during this job {job.attempts} times; "
               "it is not tried again (try a smaller image or scale)", 500)
        return False
    job.status, job.stage, job.started_at, job.upscale_started_at = "queued", "queued", None, None
    job.steps_done = job.steps_total = 0
    persist(files, job)
    return True
