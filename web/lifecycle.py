"""One job's life, written once: its record, its states, and the work that moves it between them.

    queued ──start──> running ──┬──> done
       │  ^                     ├──> failed     (bad input, engine error, lost input, gave up)
       │  └── server stopped ───┤
       └──cancel──> cancelled <─┘ (cancel: stops within one network step)

Every transition is persisted atomically with the record (`FileStore.save_record`), so a job is
plain data that any process can read: the in-process runner and a Celery worker both move a job
with `run_job`, and a restarted server (or a worker given a job whose first worker died) decides
with `adopt`. A record never says ``running`` unless a process is running it: what an interrupted
process left running is queued again, or failed with a reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal

from esrgan.errors import Cancelled, RemasterError
from esrgan.imageio import DecodedImage, encode
from esrgan.imageio import decode as decode_image
from esrgan.pipeline import Upscaler, resample
from esrgan.registry import output_size
from web.errors import http_status
from web.estimates import SpeedBook
from web.storage import FileStore

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")
FAST_MODEL = "realesr-animevideov3"  # makes the quick preview of a heavy model's job (~27x cheaper than x4plus)
PREVIEW_MIN_SECONDS = 4.0  # jobs expected to be quicker than this get no preview
PREVIEW_MAX_PIXELS = 2048 * 2048  # a preview is for looking at, not for keeping: its input is shrunk to fit
MAX_ATTEMPTS = 2  # runs of one job that a crash may interrupt before it is failed for good
REPORT_INTERVAL = 0.4  # seconds between progress reports to other processes (workers)
STAGE_TEXT = {
    "queued": "Waiting for its turn",
    "calibrating": "Measuring this CPU, once",
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
    stage_started_at: float | None = None
    upscale_started_at: float | None = None
    upscale_seconds: float | None = None  # what the upscaling alone took (learned for estimates)
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
        """A job from its record (fields this version does not know are ignored).

        Raises:
            ValueError: The record lacks what every job has (not a record this app wrote).
        """
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ValueError(f"not a job record: {exc}") from None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def fraction(self) -> float:
        if self.status == "done":
            return 1.0
        return min(1.0, self.steps_done / self.steps_total) if self.steps_total else 0.0

    @property
    def shown_stage(self) -> str:
        if self.cancel_requested and not self.finished:
            return "cancelling"
        return self.status if self.finished else self.stage

    def elapsed_seconds(self, now: float | None = None) -> float | None:
        """Seconds since it started running (frozen when it ended); None while queued."""
        if self.started_at is None:
            return None
        return round(max(0.0, (self.finished_at or now or time.time()) - self.started_at), 1)

    def eta_seconds(self, now: float | None = None, ahead: float = 0.0, calibration: float | None = None
                    ) -> float | None:
        """Seconds left: the prediction from this machine's measured rate at first, then the pace
        this job actually achieves once enough of it is done to tell.

        Args:
            now: The time (default: now).
            ahead: Seconds of work before this queued job starts (jobs ahead of it).
            calibration: Seconds the one-time CPU measurement takes, when it is still to come.
        """
        if self.finished or self.cancel_requested:
            return None
        now = now or time.time()
        if self.status == "running" and self.stage in ("upscaling", "encoding") and self.upscale_started_at:
            spent = now - self.upscale_started_at
            fraction = self.fraction
            if fraction >= 0.1 and spent > 1.0:
                return round(spent * (1 - fraction) / fraction, 1)
            if self.estimate_seconds is not None:
                return round(max(self.estimate_seconds - spent, 1.0), 1)
            return None
        if self.estimate_seconds is None:
            return None
        before = ahead if self.status == "queued" else 0.0
        if calibration is not None and self.stage in ("queued", "calibrating"):
            spent = now - self.stage_started_at if self.stage == "calibrating" and self.stage_started_at else 0.0
            before += max(calibration - spent, 1.0)
        return round(before + self.estimate_seconds, 1)

    def stage_text(self, calibration: float | None = None) -> str:
        """The stage in a few words a person understands."""
        stage = self.shown_stage
        text = STAGE_TEXT.get(stage, stage)
        if stage == "calibrating" and calibration is not None:
            return f"{text} (about {calibration:.0f} s)"
        if stage == "queued" and calibration is not None:
            return f"{text}; this CPU is measured once first (about {calibration:.0f} s)"
        return text


@dataclass
class Workshop:
    """What running a job needs, built the same way by every process that runs jobs.

    Attributes:
        upscaler: The engine (its models load once and stay).
        files: Where the input, the outputs and the record live.
        speed: This process's measured rates: estimates before a run, learning after it.
        preview_min_seconds: Jobs expected to take longer than this get a quick preview first.
        worker: A name for the record, e.g. the Celery worker's.
    """

    upscaler: Upscaler
    files: FileStore
    speed: SpeedBook
    preview_min_seconds: float = PREVIEW_MIN_SECONDS
    worker: str | None = None

    def estimate(self, job: Job) -> float | None:
        """Seconds the upscaling of ``job`` should take here (None when it cannot be told)."""
        try:
            return round(self.speed.seconds(job.model, job.input_width, job.input_height), 1)
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
    """running -> queued: its process stopped (or died) before it ended; the run starts afresh."""
    if job.preview_file is not None:
        files.delete(job.preview_file)
    job.status = job.stage = "queued"
    job.started_at = job.stage_started_at = job.upscale_started_at = job.preview_file = None
    job.steps_done = job.steps_total = 0
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


def run_job(job: Job, shop: Workshop, *, cancelled: Callable[[], bool] = lambda: False,
            interrupted: Callable[[], bool] = lambda: False, report: Report | None = None) -> Job:
    """Run a queued (or just started) job to its end, persisting every transition; never raises
    for a job's fault.

    Args:
        job: A queued job whose input is in ``shop.files``, or one `start` has just moved to running.
        shop: The engine, the files and the rates of this process.
        cancelled: Polled at every network step: True when someone asked to cancel the job (it
            then ends ``cancelled``).
        interrupted: Polled likewise: True when this process is stopping (the job then goes back
            to ``queued``, to run again at the next start).
        report: Called (throttled) as progress moves, e.g. to publish it to other processes.
    """
    files = shop.files
    if job.status == "queued":
        start(files, job, shop.worker)
    last_report = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_report
        job.steps_done, job.steps_total = done, total
        if report is not None and (time.monotonic() - last_report >= REPORT_INTERVAL or done == total):
            last_report = time.monotonic()
            report(job)

    def stage(name: str) -> None:
        if name == "upscaling":  # the runtime is known now: a better estimate than at submission
            job.estimate_seconds = shop.estimate(job) or job.estimate_seconds
        set_stage(files, job, name)

    def stop_requested() -> bool:
        if not job.cancel_requested and cancelled():
            job.cancel_requested = True
        return job.cancel_requested or interrupted()

    try:
        image = decode_image(files.read(job.input_file), max_pixels=None)
        _preview(job, image, shop, stop_requested)
        result = shop.upscaler.upscale(image, job.scale, job.anime, job.model, progress=progress,
                                       cancelled=stop_requested, stage=stage, **_noise(job))
        if stop_requested():
            raise Cancelled("stopped on request")
        job.upscale_seconds = round(time.time() - (job.upscale_started_at or job.started_at), 3)
        set_stage(files, job, "encoding")
        data = encode(result.image, job.output_format, job.quality)
        job.output_file = files.write(job.id, "out", job.output_format, data)
    except Cancelled:
        if job.cancel_requested:
            return finish(files, job, "cancelled", "cancelled", 409)
        log.info("job %s interrupted by a stop; it runs again at the next start", job.id)
        job.attempts -= 1  # a clean stop is not the job's fault
        return requeue(files, job)
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
    _learn(job, shop.speed)
    return finish(files, job, "done")


def _noise(job: Job) -> dict:
    """The engine's noise reduction, passed only when asked for."""
    return {"noise": job.noise} if job.noise not in (None, "none") else {}


def _learn(job: Job, speed: SpeedBook) -> None:
    if not job.upscale_seconds or not job.provenance:
        return
    try:
        speed.learn(job.provenance["model"], job.input_width, job.input_height, job.upscale_seconds)
    except Exception:  # learning is a courtesy too
        log.warning("could not learn the speed of job %s", job.id, exc_info=True)


def shrunk(image: DecodedImage, max_pixels: int) -> DecodedImage:
    """``image`` resampled (Lanczos, alpha too) to at most ``max_pixels``; itself when it fits."""
    if image.width * image.height <= max_pixels:
        return image
    fit = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * fit)), max(1, int(image.height * fit)))
    return replace(image, pixels=resample(image.pixels, size))


def _preview(job: Job, image: DecodedImage, shop: Workshop, stop_requested: Callable[[], bool]) -> None:
    """A quick look at the result while the heavy model works (best effort): the fast model on the
    input (shrunk so the preview stays under PREVIEW_MAX_PIXELS), or a plain resample where the fast
    model is not installed. Stored as the job's "preview" PNG."""
    if job.model == FAST_MODEL or (job.estimate_seconds or 0) < shop.preview_min_seconds:
        return
    files, upscaler = shop.files, shop.upscaler
    set_stage(files, job, "previewing")

    def stage(name: str) -> None:  # the one-time CPU measurement may come first: say so
        set_stage(files, job, {"upscaling": "previewing"}.get(name, name))

    try:
        source = shrunk(image, max(1, int(PREVIEW_MAX_PIXELS / job.scale**2)))
        if FAST_MODEL in upscaler.store.entries():
            quick = upscaler.upscale(source, job.scale, model=FAST_MODEL, cancelled=stop_requested, stage=stage).image
        else:
            quick = replace(source, pixels=resample(source.pixels, output_size(source.width, source.height, job.scale)))
        data = encode(replace(quick, bit_depth=8), "png")
        job.preview_file = files.write(job.id, "preview", "png", data)
    except Cancelled:
        raise
    except (RemasterError, OSError) as exc:  # no preview is no failure
        log.warning("no preview for job %s: %s", job.id, exc)
    persist(files, job)


def adopt(files: FileStore, job: Job) -> bool:
    """Decide what becomes of a job an earlier process (or a dead worker) left unfinished. Returns
    True when the job should run again (its record then says ``queued``); else it is finished here,
    with a reason a person understands."""
    if job.finished:
        return False
    if job.cancel_requested:
        finish(files, job, "cancelled", "cancelled", 409)
        return False
    if not files.exists(job.input_file):
        finish(files, job, "failed", "the uploaded image is gone (expired or deleted); upload it again", 410)
        return False
    if job.attempts >= MAX_ATTEMPTS:
        finish(files, job, "failed", f"the server (or the worker) running this job stopped {job.attempts} times "
               "during it; it is not tried again (try a smaller image or scale)", 500)
        return False
    if job.status != "queued":
        requeue(files, job)
    return True
