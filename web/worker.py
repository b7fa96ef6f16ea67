"""Celery with Redis: the app built from the Flask config, the task that runs one job, the worker command.

Start a worker with ``python -m web.worker --name gpu1`` on any machine that shares the web app's
``REMASTER_BROKER_URL`` (Redis: broker and result store) and ``REMASTER_UPLOAD_FOLDER`` (a folder
every machine reaches). The worker builds the same Flask app as the web node (`create_app`, so the
same defaults and ``REMASTER_*`` settings: tile, backend, precision, device, limits, threads,
weights folder) with the role "worker", and runs each job with `web.lifecycle.run_job`, exactly
as the in-process runner does. Jobs are acknowledged only when finished (``acks_late``), so a
worker that dies mid-job leaves its job to another; input errors fail the job once.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time

from celery import Celery, Task
from celery.signals import worker_ready
from flask import Flask
from redis.exceptions import RedisError

from web.lifecycle import Job, adopt, load_job, persist, run_job
from web.service import remaster

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "remaster"
TASK_NAME = "remaster.upscale"
CANCEL_KEY = "remaster:cancel:{}"
QUEUED_KEY = "remaster:queued"  # sorted set: job id -> enqueue time, for the oldest job's age
WORKER_KEY = "remaster:workers"  # hash: worker name -> last heartbeat
RATES_KEY = "remaster:rates"  # hash: model -> seconds per input pixel, measured by the workers' jobs
HEARTBEAT_SECONDS = 10


def celery_init_app(app: Flask) -> Celery:
    """Flask's documented pattern: a Celery app configured from the Flask config, whose tasks run
    inside the Flask app context (so they reach `remaster()` and its settings)."""

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
    celery.task(name=TASK_NAME, bind=True)(upscale_task)
    app.extensions["celery"] = celery
    return celery


def worker_name() -> str:
    """The name this worker was given (``--name``), else host:pid."""
    from flask import current_app

    return current_app.config.get("WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def upscale_task(self: Task, job_id: str) -> dict:
    """Run one job whose record and input are in the shared folder; returns the final record."""
    shop = remaster().workshop
    files = shop.files
    redis = self.app.backend.client
    name = shop.worker or worker_name()
    redis.zrem(QUEUED_KEY, job_id)
    redis.hset(WORKER_KEY, name, time.time())
    job = load_job(files, job_id)
    if job is None:
        return {"id": job_id, "status": "failed", "error": "the job's record is gone (expired?)"}
    cancel_key = CANCEL_KEY.format(job_id)
    if redis.exists(cancel_key):
        job.cancel_requested = True
    # A job that says "running" here was redelivered: the worker that ran it died. It runs again,
    # or ends with its reason (interrupted too often, input gone), as after a server restart.
    if not adopt(files, job):
        return job.as_dict()

    def cancelled() -> bool:
        try:
            return bool(redis.exists(cancel_key))
        except RedisError:  # Redis restarting: the job goes on; a cancel is seen at a later step
            return False

    def report(current: Job) -> None:
        persist(files, current)
        redis.hset(WORKER_KEY, name, time.time())

    run_job(job, shop, cancelled=cancelled, report=report)
    if job.status == "done" and job.upscale_seconds and job.provenance:
        publish_rate(redis, job.provenance["model"], job.upscale_seconds / (job.input_width * job.input_height))
    return job.as_dict()


def publish_rate(redis, model: str, seconds_per_pixel: float) -> None:
    """Share what a job measured (seconds per input pixel of ``model``) with the web node's estimates."""
    try:
        previous = redis.hget(RATES_KEY, model)
        rate = seconds_per_pixel if previous is None else 0.5 * (float(previous) + seconds_per_pixel)
        redis.hset(RATES_KEY, model, rate)
    except (RedisError, ValueError):
        log.warning("could not publish the rate of %s", model)


@worker_ready.connect
def _heartbeat(sender=None, **_: object) -> None:
    """Tell the web app's health endpoint this worker is alive, every few seconds, idle or busy."""
    app = sender.app.flask_app if sender is not None and hasattr(sender.app, "flask_app") else None
    if app is None:
        return
    with app.app_context():
        name = worker_name()
    client = sender.app.backend.client

    def beat() -> None:
        while True:
            try:
                client.hset(WORKER_KEY, name, time.time())
            except Exception:  # Redis restarting: try again at the next beat
                log.warning("heartbeat to Redis failed")
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """``python -m web.worker``: one Celery worker, one job at a time, configured like the web app."""
    parser = argparse.ArgumentParser(prog="python -m web.worker", description=main.__doc__)
    parser.add_argument("--queues", default=DEFAULT_QUEUE, help="comma-separated: remaster, or gpu / cpu with routing")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default: REMASTER_DEVICE or auto)")
    parser.add_argument("--name", default=None, help="worker name shown by /healthz (default: remaster-<pid>@host)")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)

    from web import create_app

    name = args.name or f"remaster-{os.getpid()}@{socket.gethostname()}"
    overrides = {"ROLE": "worker", "WORKER_NAME": name}
    if args.device:
        overrides["DEVICE"] = args.device
    app = create_app(overrides)
    if not app.config["BROKER_URL"]:
        parser.error("set REMASTER_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    celery = celery_init_app(app)
    celery.flask_app = app
    # One job at a time per worker (a solo pool), so one inference has every core or the GPU.
    celery.worker_main(["worker", "--pool", "solo", "-Q", args.queues, "-n", name, "--loglevel", args.loglevel,
                        "--without-gossip", "--without-mingle"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
