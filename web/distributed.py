"""The job runner for many machines: jobs go to Celery workers through Redis.

Same interface as `InProcessRunner`. A job's record (plain JSON) lives in the shared upload folder
and is written by the web app at submission and by the worker as it starts and ends; progress comes
from the result store; cancelling revokes a queued job and flags a running one, which stops
between tiles.
"""

from __future__ import annotations

import time

from celery.result import AsyncResult

from web.errors import QueueFull
from web.jobs import FINISHED, PRIOR_FLOPS_PER_SECOND, Job
from web.storage import FileStore
from web.worker import CANCEL_KEY, DEFAULT_QUEUE, QUEUED_KEY, TASK_NAME, WORKER_KEY, make_celery

HEAVY_ARCH_QUEUE = "gpu"  # with routing on, RRDBNet models go here and the compact model to "cpu"
WORKER_SEEN_SECONDS = 120


class CeleryRunner:
    """Submit jobs to Celery workers; read their state back from the shared folder and Redis.

    Args:
        broker_url: Redis URL (broker and result store).
        files: The shared folder.
        max_queue: Queued jobs beyond which submissions are refused with `QueueFull`.
        route_by_device: Send heavy models to the ``gpu`` queue and the fast one to ``cpu``
            (else everything goes to ``remaster``).
        flops_per_pixel: Model name -> FLOPs per input pixel, for estimates.
    """

    def __init__(self, broker_url: str, files: FileStore, max_queue: int = 100, route_by_device: bool = False,
                 flops_per_pixel=None) -> None:
        self.celery = make_celery(broker_url)
        self.redis = self.celery.backend.client
        self.files = files
        self.max_queue = max_queue
        self.route_by_device = route_by_device
        self.flops_per_pixel = flops_per_pixel

    def start(self) -> None:
        self.redis.ping()

    def stop(self) -> None:
        self.celery.close()

    def queue_for(self, job: Job) -> str:
        if not self.route_by_device:
            return DEFAULT_QUEUE
        return "cpu" if job.model == "realesr-animevideov3" else HEAVY_ARCH_QUEUE

    def submit(self, job: Job) -> Job:
        waiting = self.redis.zcard(QUEUED_KEY)
        if waiting >= self.max_queue:
            raise QueueFull(f"the queue is full ({waiting} jobs waiting); try again shortly")
        self.files.save_record(job.id, job.as_dict())
        self.redis.zadd(QUEUED_KEY, {job.id: job.created_at})
        self.celery.send_task(TASK_NAME, args=[job.id, str(self.files.root)], task_id=job.id,
                              queue=self.queue_for(job))
        return job

    def get(self, job_id: str) -> Job | None:
        record = self.files.load_record(job_id)
        if record is None:
            return None
        job = Job.from_dict(record)
        if job.status == "running":
            result = AsyncResult(job_id, app=self.celery)
            if result.state == "PROGRESS" and isinstance(result.info, dict):
                job.tiles_done, job.tiles_total = result.info.get("done", 0), result.info.get("total", 0)
        return job

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None or job.status in FINISHED:
            return job
        self.redis.set(CANCEL_KEY.format(job_id), 1, ex=int(self.files.ttl_seconds))
        self.celery.control.revoke(job_id)
        if job.status == "queued":
            self.redis.zrem(QUEUED_KEY, job_id)
            job.status, job.finished_at, job.error, job.error_status = "cancelled", time.time(), "cancelled", 409
            job.cancel_requested = True
            self.files.save_record(job.id, job.as_dict())
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job.status in FINISHED or (deadline and time.monotonic() > deadline):
                return job
            time.sleep(0.2)

    def estimate_seconds(self, model: str, width: int, height: int) -> float:
        flops = self.flops_per_pixel(model) if self.flops_per_pixel else 36e6
        return flops * width * height / PRIOR_FLOPS_PER_SECOND["cpu"]

    def stats(self) -> dict:
        now = time.time()
        oldest = self.redis.zrange(QUEUED_KEY, 0, 0, withscores=True)
        workers = {name.decode(): round(now - float(seen), 1) for name, seen in self.redis.hgetall(WORKER_KEY).items()
                   if now - float(seen) < WORKER_SEEN_SECONDS}
        queues = (DEFAULT_QUEUE, "cpu", HEAVY_ARCH_QUEUE) if self.route_by_device else (DEFAULT_QUEUE,)
        return {
            "runner": "celery",
            "workers_seen": workers,
            "queue_lengths": {q: self.redis.llen(q) for q in queues},
            "queued": self.redis.zcard(QUEUED_KEY),
            "oldest_queued_seconds": round(now - oldest[0][1], 1) if oldest else None,
            "max_queue": self.max_queue,
        }
