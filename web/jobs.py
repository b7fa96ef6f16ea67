"""The in-process job runner (the embedded default) and what every runner offers the web layer.

A runner only needs the `JobRunner` methods; jobs move through their states with
`web.lifecycle.run_job`, here on a bounded pool of threads, on Celery workers in
`web.distributed`. On start the in-process runner adopts the jobs an earlier process left in the
upload folder: it runs them again or ends them with a reason.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from esrgan.pipeline import Upscaler, flops_per_pixel
from esrgan.speed import CALIBRATION_MODEL
from web.errors import QueueFull
from web.lifecycle import FINISHED, Job, adopt, finish, persist, run_job
from web.storage import FileStore

log = logging.getLogger(__name__)

__all__ = ["FINISHED", "PRIOR_FLOPS_PER_SECOND", "InProcessRunner", "Job", "JobRunner", "SpeedBook"]

STOP = "stop"  # queue sentinel: a worker that takes it leaves
# Sustained convolution throughput assumed before anything on a device has been measured.
PRIOR_FLOPS_PER_SECOND = {"cpu": 60e9, "cuda": 30e12}


class JobRunner(Protocol):
    """What the web layer needs of a runner."""

    def start(self) -> None: ...
    def submit(self, job: Job) -> Job: ...
    def get(self, job_id: str) -> Job | None: ...
    def cancel(self, job_id: str) -> Job | None: ...
    def wait(self, job_id: str, timeout: float | None = None) -> Job | None: ...
    def estimate_seconds(self, model: str, width: int, height: int) -> float: ...
    def stats(self) -> dict: ...
    def stop(self) -> None: ...


class SpeedBook:
    """Seconds per processed pixel for each model on this machine: measured by finished jobs,
    before that derived from the CPU calibration (x4plus) by the models' FLOPs."""

    def __init__(self, upscaler: Upscaler) -> None:
        self.upscaler = upscaler
        self._seconds_per_pixel: dict[str, float] = {}
        self._flops_per_pixel: dict[str, float] = {}

    def model_flops(self, model: str) -> float:
        if model not in self._flops_per_pixel:
            loaded = self.upscaler.load(model)
            self._flops_per_pixel[model] = flops_per_pixel(loaded.module, loaded.size_multiple)
        return self._flops_per_pixel[model]

    def work(self, model: str, width: int, height: int) -> int:
        return self.upscaler.work_pixels(width, height, model)

    def seconds(self, model: str, width: int, height: int) -> float:
        rate = self._seconds_per_pixel.get(model)
        if rate is None:
            rate = self._prior(model)
        return rate * self.work(model, width, height)

    def learn(self, model: str, width: int, height: int, seconds: float) -> None:
        measured = max(seconds, 1e-3) / max(self.work(model, width, height), 1)
        previous = self._seconds_per_pixel.get(model)
        self._seconds_per_pixel[model] = measured if previous is None else 0.5 * (previous + measured)

    def _prior(self, model: str) -> float:
        runtime = self.upscaler.runtime if self.upscaler.calibrated else None
        if runtime is not None and runtime.seconds_per_pixel:
            return runtime.seconds_per_pixel * self.model_flops(model) / self.model_flops(CALIBRATION_MODEL)
        return self.model_flops(model) / PRIOR_FLOPS_PER_SECOND[self.upscaler.device.type]


class InProcessRunner:
    """Runs jobs on a bounded pool of threads in this process.

    Args:
        upscaler: The shared engine (its models load once and stay).
        files: Where inputs, outputs and records live.
        workers: Jobs run at once (1 on a CPU: one inference already uses every core).
        max_queue: Jobs waiting beyond those running; one more is refused with `QueueFull`.
    """

    def __init__(self, upscaler: Upscaler, files: FileStore, workers: int = 1, max_queue: int = 8) -> None:
        self.upscaler = upscaler
        self.files = files
        self.workers = workers
        self.max_queue = max_queue
        self.speed = SpeedBook(upscaler)
        self._queue: queue.Queue[str] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._done_events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Adopt what an earlier process left unfinished, then start the workers."""
        self._adopt()
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"upscale-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30) -> None:
        """Cancel every unfinished job and wait for the workers to leave (within a network step)."""
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
            self._track(job)
        job.estimate_seconds = self._estimate(job)
        persist(self.files, job)
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
        """Ask a job to stop. A queued job ends at once; a running one within a network step."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:  # finished before this process started, or expired
            return self.get(job_id)
        with self._lock:
            if job.finished:
                return job
            job.cancel_requested = True
            if job.status == "queued":
                self._finish(job, "cancelled", "cancelled before it started", 409)
            else:
                persist(self.files, job)
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
        """Seconds the upscaling would take on this machine, from measured (or derived) rates."""
        return self.speed.seconds(model, width, height)

    # --- inside ------------------------------------------------------------------------------

    def _estimate(self, job: Job) -> float | None:
        try:
            return round(self.estimate_seconds(job.model, job.input_width, job.input_height), 1)
        except Exception:  # an estimate is a courtesy; the job itself reports real errors
            log.warning("no estimate for job %s", job.id, exc_info=True)
            return None

    def _track(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._done_events[job.id] = threading.Event()

    def _adopt(self) -> None:
        again = []
        for record in self.files.records():
            job = Job.from_dict(record)
            if job.finished:
                continue
            try:
                queued = adopt(self.files, job)
            except OSError:
                log.exception("could not adopt job %s", job.id)
                continue
            log.info("adopted job %s from an earlier run: %s", job.id, "queued again" if queued else job.status)
            if queued:
                again.append(job)
        with self._lock:
            for job in again:
                self._track(job)
                self._queue.put(job.id)

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id == STOP:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job.status != "queued":
                    continue
            run_job(job, self.upscaler, self.files, cancelled=lambda: False)
            if job.status == "done":
                self._learn(job)
            event = self._done_events.get(job.id)
            if event is not None:
                event.set()

    def _learn(self, job: Job) -> None:
        if job.upscale_started_at and job.finished_at and job.provenance:
            try:
                self.speed.learn(job.provenance["model"], job.input_width, job.input_height,
                                 job.finished_at - job.upscale_started_at)
            except Exception:
                log.warning("could not learn the speed of job %s", job.id, exc_info=True)

    def _finish(self, job: Job, status, error: str | None = None, http: int | None = None) -> None:
        """End a job that never ran (call with the lock held) and wake whoever waits for it."""
        finish(self.files, job, status, error, http)
        event = self._done_events.get(job.id)
        if event is not None:
            event.set()

    def _forget_expired(self) -> None:
        cutoff = time.time() - self.files.ttl_seconds
        for job_id in [k for k, j in self._jobs.items() if j.finished and j.created_at < cutoff]:
            del self._jobs[job_id]
            self._done_events.pop(job_id, None)
