"""A Celery worker: the task that runs one job, its heartbeat, and the worker command.

Start a worker with ``python -m web.worker --name gpu1`` on any machine that shares the web app's
``REMASTER_BROKER_URL`` (Redis: broker and result store) and ``REMASTER_UPLOAD_FOLDER`` (a folder
every machine reaches). The worker builds the same Flask app as the web node (`create_app`, so the
same defaults and ``REMASTER_*`` settings: tile, backend, precision, device, limits, threads,
weights folder) with the role "worker", and runs each job with `web.jobs.lifecycle.run_job`, exactly
as the in-process runner does; in its idle moments it lets the engine measure the CPU again when
jobs said it must (`web.worker.idle`). Jobs are acknowledged only when finished (``acks_late``), so a
worker that dies mid-job leaves its job to another; input errors fail the job once.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time

from celery import Task
from celery.signals import task_postrun, task_prerun, worker_ready
from redis.exceptions import RedisError

from esrgan.errors import RemasterError
from esrgan.models.keys import ModelKey
from esrgan.runtime.devices import describe, resolve_device
from esrgan.runtime.rates import running_mean
from web.jobs.lifecycle import Job, load_job, persist, recover, run_job
from web.runners.celery_app import (
    CANCEL_KEY,
    DEFAULT_QUEUE,
    HEARTBEAT_SECONDS,
    QUEUED_KEY,
    RATES_KEY,
    TASK_NAME,
    WORKER_KEY,
    celery_init_app,
    worker_lost,
)
from web.service import services
from web.worker.idle import IdleRecheck
from web.worker.video_tasks import enable_video_tasks

log = logging.getLogger(__name__)


def worker_name() -> str:
    """The name this worker was given (``--name``), else host:pid."""
    from flask import current_app

    return current_app.config.get("WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def upscale_task(self: Task, job_id: str) -> dict:
    """Run one job whose record and input are in the shared folder; returns the final record."""
    resources = services().job_resources
    files = resources.files
    redis = self.app.backend.client
    name = resources.worker or worker_name()
    redis.zrem(QUEUED_KEY, job_id)
    redis.hset(WORKER_KEY, name, time.time())
    job = load_job(files, job_id)
    if job is None:
        return {"id": job_id, "status": "failed", "error": "the job's record is gone (expired?)"}
    holder = job.worker if job.status == "running" and job.worker != name else None
    if holder and not worker_lost(redis, holder):
        # Redis redelivers an unacknowledged job once the visibility timeout passes, even while its
        # worker still runs it: this copy waits, and ends at once when the job has finished.
        log.info("job %s is running on %s: this copy waits", job_id, holder)
        raise self.retry(countdown=HEARTBEAT_SECONDS, max_retries=None)
    cancel_key = CANCEL_KEY.format(job_id)
    if redis.exists(cancel_key):
        job.cancel_requested = True
    # A job that says "running" here was redelivered: the worker that ran it died. It runs again,
    # or ends with its reason (interrupted too often, input gone), as after a server restart.
    if not recover(files, job):
        return job.as_dict()

    def cancelled() -> bool:
        try:
            return bool(redis.exists(cancel_key))
        except RedisError:  # Redis restarting: the job goes on; a cancel is seen at a later step
            return False

    def report(current: Job) -> None:
        persist(files, current)
        redis.hset(WORKER_KEY, name, time.time())

    run_job(job, resources, cancelled=cancelled, report=report)
    if job.status == "done" and job.provenance:
        rate = resources.upscaler.rates.get(ModelKey(job.provenance["model"]))  # a web job names a catalogued model
        if rate is not None:
            publish_rate(redis, job.provenance["model"], rate)
    return job.as_dict()


def publish_rate(redis, model: str, rate: float) -> None:
    """Share this worker's rate of ``model`` (`esrgan.runtime.rates`: seconds per processed pixel) with the
    web node's estimates, as a running mean over the workers."""
    try:
        previous = redis.hget(RATES_KEY, model)
        redis.hset(RATES_KEY, model, running_mean(None if previous is None else float(previous), rate))
    except (RedisError, ValueError):
        log.warning("could not publish the rate of %s", model)


@worker_ready.connect
def _on_ready(sender=None, **_: object) -> None:
    """Once the worker is up: its heartbeat, and the CPU re-measure of its idle moments."""
    app = sender.app.flask_app if sender is not None and hasattr(sender.app, "flask_app") else None
    if app is None:
        return
    with app.app_context():
        name, upscaler = worker_name(), services().job_resources.upscaler
    client = sender.app.backend.client
    threading.Thread(target=_beat, args=(client, name), name="heartbeat", daemon=True).start()
    # Measure the CPU again only while this worker runs nothing and no job waits (`web.worker.idle`).
    idle = IdleRecheck(upscaler, lambda: client.zcard(QUEUED_KEY))
    task_prerun.connect(idle.task_started, weak=False)
    task_postrun.connect(idle.task_ended, weak=False)
    idle.start()


def _beat(client, name: str) -> None:
    """Tell the web app's health endpoint this worker is alive, every few seconds, idle or busy."""
    while True:
        try:
            client.hset(WORKER_KEY, name, time.time())
        except Exception:  # Redis restarting: try again at the next beat
            log.warning("heartbeat to Redis failed")
        time.sleep(HEARTBEAT_SECONDS)


def main(argv: list[str] | None = None) -> int:
    """``python -m web.worker``: one Celery worker, one job at a time, configured like the web app."""
    parser = argparse.ArgumentParser(prog="python -m web.worker", description=main.__doc__)
    parser.add_argument("--queues", default=DEFAULT_QUEUE, help="comma-separated: remaster, or gpu / cpu with routing")
    parser.add_argument("--device", default=None,
                        help="auto, cpu, cuda[:N] or vulkan[:N] (default: REMASTER_DEVICE or auto)")
    parser.add_argument("--name", default=None, help="worker name shown by /healthz (default: remaster-<pid>@host)")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)

    from web import create_app

    overrides = {"ROLE": "worker"}
    if args.device:
        overrides["DEVICE"] = args.device
    app = create_app(overrides)
    try:  # the worker declares its device: checked before it takes a job, named in its /healthz name
        device = describe(resolve_device(app.config["DEVICE"])).split(" ")[0]
    except RemasterError as exc:
        parser.error(str(exc))
    name = args.name or f"remaster-{device}-{os.getpid()}@{socket.gethostname()}"
    app.config["WORKER_NAME"] = name
    if not app.config["BROKER_URL"]:
        parser.error("set REMASTER_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    celery = celery_init_app(app)
    celery.task(name=TASK_NAME, bind=True)(upscale_task)
    with app.app_context():  # a video job's segments go to every worker (web.worker.video_tasks)
        enable_video_tasks(celery, args.queues.split(",")[0])
    celery.flask_app = app
    # One job at a time per worker (a solo pool), so one inference has every core or the GPU.
    celery.worker_main(["worker", "--pool", "solo", "-Q", args.queues, "-n", name, "--loglevel", args.loglevel,
                        "--without-gossip", "--without-mingle"])
    return 0

