"""The job runner for many machines: jobs go to Celery workers through Redis.

Same interface as `InProcessRunner`. A job's record (plain JSON) lives in the shared upload folder;
the web app writes it at submission, the worker at every transition and (throttled) as progress
moves, so reading a job is reading its record. Cancelling ends a queued job at once and flags a
running one, which stops within one network step. This process loads no model.
"""

from __future__ import annotations

import time

from flask import Flask

from esrgan.errors import ModelNotFoundError
from esrgan.models import registry
from esrgan.runtime.rates import prior_rate, registry_flops
from web import figures
from web.errors import QueueFull
from web.jobs.estimate import work_seconds
from web.jobs.lifecycle import finish, load_job, persist
from web.jobs.record import FINISHED, Job
from web.jobs.storage import FileStore
from web.runners.celery_app import (
    CANCEL_KEY,
    DEFAULT_QUEUE,
    ETA_SHOWN_KEY,
    HEAVY_QUEUE,
    LIGHT_QUEUE,
    QUEUED_KEY,
    RATES_KEY,
    TASK_NAME,
    WORKER_KEY,
    celery_init_app,
    worker_lost,
)

WORKER_SEEN_SECONDS = 120
ETA_SHOWN_TTL_SECONDS = 24 * 3600  # a figure nobody asked for since is forgotten


class CeleryRunner:
    """Submit jobs to Celery workers; read their state back from the shared folder.

    Args:
        app: The Flask app whose config builds the Celery app.
        files: The shared folder.
        max_queue: Queued jobs beyond which submissions are refused with `QueueFull`.
        route_by_device: Send light models (`ModelSpec.light`) to the ``cpu`` queue and the others
            to ``gpu`` (else everything goes to ``remaster``).
    """

    def __init__(self, app: Flask, files: FileStore, max_queue: int, route_by_device: bool = False) -> None:
        self.celery = celery_init_app(app)
        self.redis = self.celery.backend.client
        self.files = files
        self.max_queue = max_queue
        self.route_by_device = route_by_device

    def start(self) -> None:
        self.redis.ping()

    def stop(self) -> None:
        self.celery.close()

    def queue_for(self, job: Job) -> str:
        if not self.route_by_device:
            return DEFAULT_QUEUE
        try:
            light = registry.spec(job.model).light
        except ModelNotFoundError:
            light = False
        return LIGHT_QUEUE if light else HEAVY_QUEUE

    def submit(self, job: Job) -> Job:
        waiting = self.redis.zcard(QUEUED_KEY)
        if waiting >= self.max_queue:
            raise QueueFull(f"the queue is full ({waiting} jobs waiting); try again shortly")
        job.estimate_seconds = figures.seconds(work_seconds(job, self.estimate_seconds))
        persist(self.files, job)
        self.redis.zadd(QUEUED_KEY, {job.id: job.created_at})
        self.celery.send_task(TASK_NAME, args=[job.id], task_id=job.id, queue=self.queue_for(job))
        return job

    def get(self, job_id: str) -> Job | None:
        job = load_job(self.files, job_id)
        if job is None or job.status != "running":
            return job
        if self.redis.exists(CANCEL_KEY.format(job_id)):
            job.cancel_requested = True  # the worker stops within a step and then records it
        if self._worker_lost(job.worker):
            job.status = job.stage = "queued"  # as shown; its next worker writes the record
            job.started_at = job.upscale_started_at = None
            job.steps_done = job.steps_total = 0
        return job

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None or job.status in FINISHED:
            return job
        self.redis.set(CANCEL_KEY.format(job_id), 1, ex=max(60, int(self.files.ttl_seconds)))
        job.cancel_requested = True
        if job.status == "queued":
            self.celery.control.revoke(job_id)
            self.redis.zrem(QUEUED_KEY, job_id)
            finish(self.files, job, "cancelled", "cancelled before it started", "conflict")
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job.status in FINISHED or (deadline and time.monotonic() > deadline):
                return job
            time.sleep(0.2)

    def estimate_seconds(self, model: str, width: int, height: int) -> float:
        """From the rate the workers' runs measured for ``model``, else from its FLOPs. No model is
        loaded here, so the image's own pixels stand in for the pixels the model will process."""
        rate = self.redis.hget(RATES_KEY, model)
        if rate is None:
            rate = prior_rate(registry_flops(model))
        return float(rate) * width * height

    def ahead_seconds(self, job: Job) -> float:
        return 0.0  # the jobs ahead are other machines' business; their records are not read per poll

    def eta_seconds(self, job: Job, calibration: float | None = None) -> float | None:
        """Each poll reads the job afresh from its record, so the figure last shown (which the time
        left never exceeds while the job runs, `web.jobs.eta.held`) is kept in Redis, per run of the job:
        a redelivered job starts its figure again."""
        key = ETA_SHOWN_KEY.format(job.id, job.restarts)
        shown = self.redis.get(key)
        job.eta_shown = None if shown is None else float(shown)
        eta = job.eta_seconds(ahead=self.ahead_seconds(job), calibration=calibration)
        if job.finished or eta is None:
            self.redis.delete(key)
        else:
            self.redis.set(key, eta, ex=ETA_SHOWN_TTL_SECONDS)
        return eta

    def queue_position(self, job: Job) -> int | None:
        """The job's place among the jobs waiting for any worker, oldest first (with queues per
        device, a job may start before one ahead of it that waits for the other kind of worker)."""
        if job.status != "queued":
            return None
        rank = self.redis.zrank(QUEUED_KEY, job.id)
        return None if rank is None else rank + 1

    def calibration_seconds(self) -> float | None:
        return None  # each worker measures its own CPU, and says so in the job's stage

    def _worker_lost(self, name: str | None) -> bool:
        return bool(name) and worker_lost(self.redis, name)

    def stats(self) -> dict:
        now = time.time()
        oldest = self.redis.zrange(QUEUED_KEY, 0, 0, withscores=True)
        workers = {name.decode(): round(now - float(seen), 1) for name, seen in self.redis.hgetall(WORKER_KEY).items()
                   if now - float(seen) < WORKER_SEEN_SECONDS}
        queues = (DEFAULT_QUEUE, LIGHT_QUEUE, HEAVY_QUEUE) if self.route_by_device else (DEFAULT_QUEUE,)
        running = sum(1 for record in self.files.records()
                      if record.get("status") == "running" and not self._worker_lost(record.get("worker")))
        return {
            "runner": "celery",
            "workers_seen": workers,
            "queue_lengths": {q: self.redis.llen(q) for q in queues},
            "queued": self.redis.zcard(QUEUED_KEY),
            "running": running,
            "oldest_queued_seconds": round(now - oldest[0][1], 1) if oldest else None,
            "max_queue": self.max_queue,
        }
