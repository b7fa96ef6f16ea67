"""Jobs as plain data, the work one job does, and the in-process runner (the embedded default).

A runner only needs `submit`, `get`, `cancel`, `wait` and `stats`; the web layer knows nothing
more, so a distributed runner can stand in for this one. A `Job` is serialisable (`as_dict`), and
refers to its files by name in the `FileStore`, never to objects in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Literal, Protocol

from esrgan.errors import Cancelled, RemasterError
from esrgan.imageio import decode as decode_image
from esrgan.imageio import encode
from esrgan.pipeline import Upscaler, flops_per_pixel
from esrgan.speed import CALIBRATION_MODEL
from web.errors import QueueFull, http_status
from web.storage import FileStore

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED = ("done", "failed", "cancelled")
# Sustained convolution throughput assumed before the first job on a device has been measured.
STOP = "stop"  # queue sentinel: a worker that takes it leaves
PRIOR_FLOPS_PER_SECOND = {"cpu": 60e9, "cuda": 30e12}


@dataclass
class Job:
    """One upscaling request and everything known about it."""

    id: str
    scale: int
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
    status: Status = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    tiles_done: int = 0
    tiles_total: int = 0
    output_file: str | None = None
    provenance: dict | None = None
    error: str | None = None
    error_status: int | None = None
    cancel_requested: bool = False
    worker: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left, extrapolated from the tiles done so far."""
        if self.status != "running" or not self.tiles_done or not self.started_at:
            return None
        elapsed = time.time() - self.started_at
        return round(elapsed / self.tiles_done * (self.tiles_total - self.tiles_done), 1)


def execute(job: Job, upscaler: Upscaler, files: FileStore, progress, cancelled) -> Job:
    """Do one job's work: read its input, upscale, write its output atomically. Raises on failure."""
    image = decode_image(files.read(job.input_file), max_pixels=None)
    result = upscaler.upscale(image, job.scale, job.anime, job.model, progress=progress, cancelled=cancelled)
    if cancelled():
        raise Cancelled("stopped on request")
    data = encode(result.image, job.output_format, job.quality)
    job.output_file = files.write(job.id, "out", job.output_format, data)
    job.output_width, job.output_height = result.image.width, result.image.height
    job.provenance = result.provenance.as_dict()
    return job


class JobRunner(Protocol):
    """What the web layer needs of a runner."""

    def submit(self, job: Job) -> Job: ...
    def get(self, job_id: str) -> Job | None: ...
    def cancel(self, job_id: str) -> Job | None: ...
    def wait(self, job_id: str, timeout: float | None = None) -> Job | None: ...
    def estimate_seconds(self, model: str, width: int, height: int) -> float: ...
    def stats(self) -> dict: ...
    def stop(self) -> None: ...


class InProcessRunner:
    """Runs jobs on a bounded pool of threads in this process.

    Args:
        upscaler: The shared engine (its models load once and stay).
        files: Where inputs and outputs live.
        workers: Jobs run at once (1 on a CPU: one inference already uses every core).
        max_queue: Jobs waiting beyond those running; one more is refused with `QueueFull`.
    """

    def __init__(self, upscaler: Upscaler, files: FileStore, workers: int = 1, max_queue: int = 8) -> None:
        self.upscaler = upscaler
        self.files = files
        self.workers = workers
        self.max_queue = max_queue
        self._queue: queue.Queue[str] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._done_events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._flops_per_second: dict[str, float] = {}
        self._flops_per_pixel: dict[str, float] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"upscale-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30) -> None:
        """Cancel every unfinished job and wait for the workers to leave (between tiles)."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel_requested = True
        for _ in self._threads:
            self._queue.put(STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    # --- the interface ----------------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if j.status == "queued")
            if waiting >= self.max_queue:
                raise QueueFull(f"the queue is full ({waiting} jobs waiting); try again shortly")
            self._forget_expired()
            self._jobs[job.id] = job
            self._done_events[job.id] = threading.Event()
        self._persist(job)
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        record = self.files.load_record(job_id)
        return Job.from_dict(record) if record else None

    def cancel(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status in FINISHED:
                return job
            job.cancel_requested = True
            if job.status == "queued":
                self._finish(job, "cancelled", error="cancelled before it started", http=409)
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        event = self._done_events.get(job_id)
        if event is not None:
            event.wait(timeout)
        return self.get(job_id)

    def stats(self) -> dict:
        with self._lock:
            states = [j.status for j in self._jobs.values()]
        return {"runner": "in-process", "workers": self.workers, "max_queue": self.max_queue,
                "queued": states.count("queued"), "running": states.count("running")}

    def estimate_seconds(self, model: str, width: int, height: int) -> float:
        """Seconds a job would take on this machine, from measured (or prior) throughput."""
        flops = self._model_flops(model) * width * height
        rate = self._flops_per_second.get(model) or self._calibrated_rate()
        return flops / rate

    def _calibrated_rate(self) -> float:
        """Throughput from the runtime calibration (x4plus), before any job has been timed."""
        runtime = self.upscaler.runtime
        if runtime.seconds_per_pixel:
            return self._model_flops(CALIBRATION_MODEL) / runtime.seconds_per_pixel
        return PRIOR_FLOPS_PER_SECOND[self.upscaler.device.type]

    # --- inside ------------------------------------------------------------------------------

    def _model_flops(self, model: str) -> float:
        if model not in self._flops_per_pixel:
            loaded = self.upscaler.load(model)
            self._flops_per_pixel[model] = flops_per_pixel(loaded.module, loaded.size_multiple)
        return self._flops_per_pixel[model]

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id == STOP:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job.status != "queued":
                    continue
                job.status, job.started_at = "running", time.time()
            self._persist(job)
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(done: int, total: int) -> None:
            job.tiles_done, job.tiles_total = done, total

        try:
            execute(job, self.upscaler, self.files, progress, lambda: job.cancel_requested)
        except Cancelled:
            with self._lock:
                self._finish(job, "cancelled", error="cancelled", http=409)
        except RemasterError as exc:
            with self._lock:
                self._finish(job, "failed", error=str(exc), http=http_status(exc))
        except Exception:  # a bug must fail one job, never the worker
            log.exception("job %s failed unexpectedly", job.id)
            with self._lock:
                self._finish(job, "failed", error="internal error while upscaling", http=500)
        else:
            self._learn_speed(job)
            with self._lock:
                self._finish(job, "done")

    def _learn_speed(self, job: Job) -> None:
        model = job.provenance["model"]
        seconds = max(job.provenance["seconds"], 1e-3)
        measured = self._model_flops(model) * job.input_width * job.input_height / seconds
        previous = self._flops_per_second.get(model)
        self._flops_per_second[model] = measured if previous is None else 0.5 * (previous + measured)

    def _finish(self, job: Job, status: Status, error: str | None = None, http: int | None = None) -> None:
        """Record the end of a job (call with the lock held) and wake whoever waits for it."""
        job.status, job.finished_at, job.error, job.error_status = status, time.time(), error, http
        self._persist(job)
        event = self._done_events.get(job.id)
        if event is not None:
            event.set()

    def _persist(self, job: Job) -> None:
        try:
            self.files.save_record(job.id, job.as_dict())
        except OSError:
            log.exception("could not save the record of job %s", job.id)

    def _forget_expired(self) -> None:
        cutoff = time.time() - self.files.ttl_seconds
        for job_id in [k for k, j in self._jobs.items() if j.status in FINISHED and j.created_at < cutoff]:
            del self._jobs[job_id]
            self._done_events.pop(job_id, None)
