"""The in-process job runner (the embedded default) and what every runner offers the web layer.

A runner only needs the `JobRunner` methods; jobs move through their states with
`web.jobs.lifecycle.run_job`, here on a bounded pool of threads, on Celery workers in
`web.runners.celery_runner`. On start the in-process runner recovers the jobs an earlier process left in the
upload folder (`web.jobs.lifecycle.recover`): it runs them again or ends them with a reason. When no job
waits or runs, it lets the engine measure the CPU again if jobs said it must
(`esrgan.runtime.recheck`), in a thread of its own that no job waits on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from esrgan.runtime.rates import calibration_seconds
from web.errors import ErrorKind, QueueFull
from web.jobs.lifecycle import JobResources, finish, load_job, persist, recover, run_job, start
from web.jobs.record import FINISHED, Job, Status

log = logging.getLogger(__name__)

__all__ = ["FINISHED", "InProcessRunner", "Job", "JobRunner"]

STOP = "stop"  # queue sentinel: a worker that takes it leaves
IDLE_CHECK_S = 30.0  # how often an idle worker asks whether the CPU should be measured again


class JobRunner(Protocol):
    """What the web layer needs of a runner."""

    def start(self) -> None:
        """Begin taking jobs (and recover what an earlier process left, where the runner can)."""

    def submit(self, job: Job) -> Job:
        """Queue a job whose input is stored; raises `QueueFull` when the queue is full."""

    def get(self, job_id: str) -> Job | None:
        """The job as it is now; None for an unknown (or expired) id."""

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop: a queued one ends at once, a running one within a network step."""

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block until the job has finished (or ``timeout`` seconds passed); the job then."""

    def estimate_seconds(self, model: str, width: int, height: int) -> float:
        """Seconds the upscaling of such an image would take, from this machine's rates."""

    def ahead_seconds(self, job: Job) -> float:
        """Seconds of work before a queued job starts (0 when that cannot be told)."""

    def eta_seconds(self, job: Job, calibration: float | None = None) -> float | None:
        """The time left to show for ``job`` (`Job.eta_seconds` with the work ahead of it), never
        more than was shown for it before while it runs, whichever process answered before."""

    def queue_position(self, job: Job) -> int | None:
        """1 for the next queued job to start, 2 for the one after it...; None when not queued
        (or when the runner cannot tell)."""

    def calibration_seconds(self) -> float | None:
        """Seconds the one-time CPU measurement will take before the next job; None when done
        already (or not this process's business)."""

    def stats(self) -> dict:
        """Counts for /healthz."""

    def stop(self) -> None:
        """Stop taking jobs (tests, a clean shutdown)."""


class InProcessRunner:
    """Runs jobs on a bounded pool of threads in this process.

    Args:
        resources: The engine and the files the jobs run with.
        workers: Jobs run at once (1 on a CPU: one inference already uses every core).
        max_queue: Jobs waiting beyond those running; one more is refused with `QueueFull`.
    """

    def __init__(self, resources: JobResources, workers: int, max_queue: int) -> None:
        self.resources = resources
        self.files = resources.files
        self.workers = workers
        self.max_queue = max_queue
        self._queue: queue.Queue[str] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._done_events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._idle_work: threading.Thread | None = None

    def start(self) -> None:
        """Recover what an earlier process left unfinished, then start the workers."""
        self._stopping.clear()
        self._recover_left_jobs()
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"upscale-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30) -> None:
        """Stop the workers within a network step; a job they were running goes back to the queue
        (its record says ``queued``), to run again at the next start."""
        self._stopping.set()
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
        job.estimate_seconds = self.resources.estimate(job)
        persist(self.files, job)
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None else load_job(self.files, job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop. A queued job ends at once; a running one within a network step."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:  # finished before this process started, or expired
                return load_job(self.files, job_id)
            if job.finished:
                return job
            job.cancel_requested = True
            if job.status == "queued":
                self._finish(job, "cancelled", "cancelled before it started", "conflict")
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
        return self.resources.upscaler.estimate_seconds(model, width, height)

    def ahead_seconds(self, job: Job) -> float:
        """What the running jobs have left and the queued jobs before this one will take, shared
        among the workers."""
        if job.status != "queued":
            return 0.0
        now = time.time()
        with self._lock:
            ahead = [j for j in self._jobs.values() if j.status == "running"
                     or (j.status == "queued" and j.created_at < job.created_at)]
        return sum(j.eta_seconds(now, remember=False) or 0.0 for j in ahead) / max(1, self.workers)

    def eta_seconds(self, job: Job, calibration: float | None = None) -> float | None:
        return job.eta_seconds(ahead=self.ahead_seconds(job), calibration=calibration)

    def queue_position(self, job: Job) -> int | None:
        if job.status != "queued":
            return None
        with self._lock:
            return 1 + sum(1 for j in self._jobs.values() if j.status == "queued" and j.created_at < job.created_at)

    def calibration_seconds(self) -> float | None:
        return None if self.resources.upscaler.calibrated else calibration_seconds()

    # --- inside ------------------------------------------------------------------------------

    def _track(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._done_events[job.id] = threading.Event()

    def _recover_left_jobs(self) -> None:
        again = []
        for record in self.files.records():
            job = load_job(self.files, record.get("id", ""))
            if job is None or job.finished:
                continue
            try:
                queued = recover(self.files, job)
            except OSError:
                log.exception("could not recover job %s", job.id)
                continue
            log.info("recovered job %s from an earlier run: %s", job.id, "queued again" if queued else job.status)
            if queued:
                again.append(job)
        with self._lock:
            for job in again:
                self._track(job)
                self._queue.put(job.id)

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._queue.get(timeout=IDLE_CHECK_S)
            except queue.Empty:
                self.on_idle()
                continue
            if job_id == STOP:
                return
            with self._lock:  # started under the lock, so a cancel sees either queued or running
                job = self._jobs.get(job_id)
                if job is None or job.status != "queued":
                    continue
                start(self.files, job, self.resources.worker)
            run_job(job, self.resources, interrupted=self._stopping.is_set)
            if job.finished:
                event = self._done_events.get(job.id)
                if event is not None:
                    event.set()
            self.on_idle()

    def on_idle(self) -> None:
        """Between jobs: when none waits or runs, let the engine measure the CPU again if it must
        (`Upscaler.recalibrate_if_due`), in a background thread, so no job is held by it."""
        if not self.resources.upscaler.watch.due:
            return
        with self._lock:
            if self._stopping.is_set() or any(not j.finished for j in self._jobs.values()):
                return
            if self._idle_work is not None and self._idle_work.is_alive():
                return
            self._idle_work = threading.Thread(target=self._recalibrate, name="recalibrate", daemon=True)
            self._idle_work.start()

    def _recalibrate(self) -> None:
        try:
            self.resources.upscaler.recalibrate_if_due()
        except Exception:  # a failed measurement keeps the old runtime; jobs go on
            log.exception("measuring the CPU again failed")

    def _finish(self, job: Job, status: Status, error: str | None = None, kind: ErrorKind | None = None) -> None:
        """End a job that never ran (call with the lock held) and wake whoever waits for it."""
        finish(self.files, job, status, error, kind)
        event = self._done_events.get(job.id)
        if event is not None:
            event.set()

    def _forget_expired(self) -> None:
        cutoff = time.time() - self.files.ttl_seconds
        for job_id in [k for k, j in self._jobs.items() if j.finished and (j.finished_at or 0) < cutoff]:
            del self._jobs[job_id]
            self._done_events.pop(job_id, None)
