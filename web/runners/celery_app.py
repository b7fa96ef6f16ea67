"""Celery wiring, and nothing else: the Celery app built from the Flask config, the queue names and
the Redis keys the web node and the workers share, and the one reading of them both make (whether
a worker is lost).

The runner (`web.runners.celery_runner`) sends tasks by name and the worker (`web.worker.main`) registers the task
under that name; both import this module, and this module imports neither (Flask's
``examples/celery``: the app factory apart from the tasks and the views).
"""

from __future__ import annotations

import time

from celery import Celery, Task
from flask import Flask

DEFAULT_QUEUE = "remaster"
LIGHT_QUEUE = "cpu"  # with routing on: models cheap enough for any worker (`ModelSpec.light`)
HEAVY_QUEUE = "gpu"  # with routing on: every other model
TASK_NAME = "remaster.upscale"
CANCEL_KEY = "remaster:cancel:{}"
ETA_SHOWN_KEY = "remaster:eta-shown:{}:{}"  # job id, run: the seconds left last shown
QUEUED_KEY = "remaster:queued"  # sorted set: job id -> enqueue time, for the oldest job's age
WORKER_KEY = "remaster:workers"  # hash: worker name -> last heartbeat
RATES_KEY = "remaster:rates"  # hash: model -> seconds per processed pixel, measured by the workers' jobs
HEARTBEAT_SECONDS = 10
# A worker silent this long is gone: its running job is shown queued, and a redelivered copy of it
# runs; while its holder still beats, a redelivered copy waits instead (`web.worker.main`).
WORKER_LOST_SECONDS = 3 * HEARTBEAT_SECONDS + 5


def celery_init_app(app: Flask) -> Celery:
    """Flask's documented pattern: a Celery app configured from the Flask config, whose tasks run
    inside the Flask app context (so they reach the app's services and settings)."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    cfg = app.config
    broker = cfg["BROKER_URL"]
    visibility = int(cfg["VISIBILITY_TIMEOUT"])
    celery = Celery(app.name, task_cls=FlaskTask, broker=broker, backend=broker)
    celery.conf.update(
        task_acks_late=True,  # acknowledge after the work, so a lost worker's job is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # take one job at a time; the rest stay for other workers
        task_default_queue=DEFAULT_QUEUE,
        result_expires=int(cfg["FILE_TTL_SECONDS"]),
        # An unacknowledged job comes back to the queue after this; it must exceed the longest job.
        broker_transport_options={
            "visibility_timeout": visibility,
            # Look for jobs of lost workers every few seconds (each look is one small Redis query).
            "unacked_restore_interval": max(1, min(10, visibility // 2)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": visibility},
        task_serializer="json", result_serializer="json", accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


def worker_lost(redis, name: str) -> bool:
    """Whether the worker ``name`` stopped beating (`WORKER_LOST_SECONDS`): its running job is free."""
    seen = redis.hget(WORKER_KEY, name)
    return seen is None or time.time() - float(seen) > WORKER_LOST_SECONDS
