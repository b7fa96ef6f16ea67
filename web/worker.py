"""Celery with Redis: the task that runs one job on a worker machine, and the app that carries it.

Start workers with ``python -m esrgan worker`` (or ``celery -A web.worker worker``). Every worker and
the web app share ``REMASTER_BROKER_URL`` (Redis: broker and result store) and
``REMASTER_UPLOAD_FOLDER`` (a folder every machine reaches). A worker loads each model once and runs
one job at a time. Jobs are acknowledged only when finished (``acks_late``), so a worker that dies
mid-job leaves its job to another; input errors fail the job once, with its message.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from esrgan.errors import Cancelled, RemasterError
from esrgan.pipeline import UpscaleOptions, Upscaler
from esrgan.weights import ModelStore
from web.errors import http_status
from web.jobs import Job, execute
from web.storage import FileStore

log = logging.getLogger(__name__)

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE = "remaster"
TASK_NAME = "remaster.upscale"
CANCEL_KEY = "remaster:cancel:{}"
QUEUED_KEY = "remaster:queued"  # sorted set: job id -> enqueue time, for the oldest job's age
WORKER_KEY = "remaster:workers"  # hash: worker name -> last heartbeat
PROGRESS_INTERVAL = 0.5  # seconds between progress reports to the result store


def make_celery(broker_url: str | None = None) -> Celery:
    """The Celery app: Redis as broker and result store, late acks, one job at a time."""
    broker_url = broker_url or os.environ.get("REMASTER_BROKER_URL") or DEFAULT_BROKER
    app = Celery("remaster", broker=broker_url, backend=broker_url)
    visibility = int(os.environ.get("REMASTER_VISIBILITY_TIMEOUT", "3600"))
    app.conf.update(
        task_acks_late=True,  # acknowledge after the work, so a lost worker's job is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # take one job at a time; the rest stay for other workers
        task_track_started=True,
        task_default_queue=DEFAULT_QUEUE,
        result_expires=int(os.environ.get("REMASTER_FILE_TTL_SECONDS", "3600")),
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
    return app


celery_app = make_celery()
_upscaler: Upscaler | None = None
_upscaler_lock = threading.Lock()


def upscaler() -> Upscaler:
    """This worker's engine: created once, so each model loads once per worker."""
    global _upscaler
    with _upscaler_lock:
        if _upscaler is None:
            options = UpscaleOptions(device=os.environ.get("REMASTER_DEVICE", "auto"),
                                     precision=os.environ.get("REMASTER_PRECISION", "auto"))
            _upscaler = Upscaler(ModelStore(os.environ.get("REMASTER_WEIGHTS_DIR")), options)
        return _upscaler


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


HEARTBEAT_SECONDS = 10


@worker_ready.connect
def _heartbeat(sender=None, **_: object) -> None:
    """Tell the web app's health endpoint this worker is alive, every few seconds, idle or busy."""
    name = worker_name()

    def beat() -> None:
        while True:
            try:
                celery_app.backend.client.hset(WORKER_KEY, name, time.time())
            except Exception:  # Redis restarting: try again at the next beat
                log.warning("heartbeat to Redis failed")
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()


@worker_process_init.connect
def _fresh_engine(**_: object) -> None:
    global _upscaler
    _upscaler = None


@celery_app.task(bind=True, name=TASK_NAME)
def upscale_task(self, job_id: str, upload_folder: str) -> dict:
    """Run one job whose record and input are in ``upload_folder``; returns the final record."""
    files = FileStore(upload_folder)
    redis = self.app.backend.client
    record = files.load_record(job_id)
    if record is None:
        return {"id": job_id, "status": "failed", "error": "the job's record is gone (expired?)"}
    job = Job.from_dict(record)
    redis.zrem(QUEUED_KEY, job_id)
    redis.hset(WORKER_KEY, worker_name(), time.time())
    if job.status in ("done", "cancelled") or redis.exists(CANCEL_KEY.format(job_id)):
        if job.status != "done":
            _finish(files, job, "cancelled", "cancelled before it started", 409)
        return job.as_dict()
    job.status, job.started_at, job.worker = "running", time.time(), worker_name()
    job.tiles_done = 0
    files.save_record(job.id, job.as_dict())
    last_report = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_report
        job.tiles_done, job.tiles_total = done, total
        if time.monotonic() - last_report >= PROGRESS_INTERVAL or done == total:
            last_report = time.monotonic()
            self.update_state(state="PROGRESS", meta={"done": done, "total": total})
            redis.hset(WORKER_KEY, worker_name(), time.time())

    try:
        execute(job, upscaler(), files, progress, lambda: bool(redis.exists(CANCEL_KEY.format(job_id))))
    except Cancelled:
        _finish(files, job, "cancelled", "cancelled", 409)
    except RemasterError as exc:  # the input's fault: fail once, with its message, no retry
        _finish(files, job, "failed", str(exc), http_status(exc))
    except Exception:
        log.exception("job %s failed unexpectedly", job_id)
        _finish(files, job, "failed", "internal error while upscaling", 500)
    else:
        _finish(files, job, "done")
    return job.as_dict()


def _finish(files: FileStore, job: Job, status: str, error: str | None = None, http: int | None = None) -> None:
    job.status, job.finished_at, job.error, job.error_status = status, time.time(), error, http
    files.save_record(job.id, job.as_dict())
