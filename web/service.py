"""The shared resources of the app (files, engine, job runner), as one Flask extension.

Every setting comes from the app's config (defaults -> ``REMASTER_*`` environment -> the test's
dict), and the web node and a Celery worker build their engine from it the same way
(`engine_settings`). A web node whose jobs go to workers builds no engine at all: it loads no model
and measures no CPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import torch
from flask import Flask, current_app

from esrgan.errors import RemasterError
from esrgan.models.registry import ROUTES
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from web.jobs.lifecycle import JobResources
from web.jobs.storage import FileStore
from web.jobs.video import video_settings
from web.runners.in_process import InProcessRunner, JobRunner

log = logging.getLogger(__name__)

EXTENSION = "remaster"  # the key of `AppServices` in ``app.extensions``


def engine_settings(config: Mapping) -> Settings:
    """The engine's settings from the app's config, the same for the in-process runner and every worker."""
    return Settings().updated({
        "weights_folder": config["WEIGHTS_FOLDER"], "device": config["DEVICE"], "precision": config["PRECISION"],
        "backend": config["BACKEND"], "tile": config["TILE"], "max_output_pixels": config["MAX_OUTPUT_PIXELS"],
        "se_sync": config["SE_SYNC"],
    })


class AppServices:
    """Holds what every request shares; reach it with `services()` inside a request."""

    files: FileStore
    runner: JobRunner

    def __init__(self) -> None:
        self._upscaler: Upscaler | None = None
        self._store: ModelStore | None = None
        self._job_resources: JobResources | None = None
        self._lock = threading.Lock()
        self.config: dict = {}

    def init_app(self, app: Flask) -> None:
        cfg = app.config
        self.config = cfg
        if cfg["TORCH_THREADS"]:
            torch.set_num_threads(int(cfg["TORCH_THREADS"]))
        self.files = FileStore(cfg["UPLOAD_FOLDER"], float(cfg["FILE_TTL_SECONDS"]))
        app.extensions[EXTENSION] = self
        if cfg["ROLE"] == "worker":
            return  # a Celery worker: its task runs jobs with `job_resources`; no runner, no sweeper
        if cfg["BROKER_URL"]:
            from web.runners.celery_runner import CeleryRunner

            self.runner = CeleryRunner(app, self.files, int(cfg["MAX_QUEUE"]), bool(cfg["ROUTE_BY_DEVICE"]))
        else:
            self.runner = InProcessRunner(self.job_resources, int(cfg["WORKERS"]), int(cfg["MAX_QUEUE"]))
            if cfg["PRELOAD_MODELS"]:
                threading.Thread(target=self._preload, name="preload-models", daemon=True).start()
        self.runner.start()
        self.files.start_sweeper()

    @property
    def runs_jobs(self) -> bool:
        """Whether this process runs jobs itself (in-process runner or Celery worker)."""
        return self.config["ROLE"] == "worker" or not self.config["BROKER_URL"]

    @property
    def store(self) -> ModelStore:
        """The model catalogue (listing it loads no model)."""
        with self._lock:
            if self._store is None:
                self._store = ModelStore(engine_settings(self.config).weights_folder)
            return self._store

    @property
    def upscaler(self) -> Upscaler:
        """The engine, built on first use from the config."""
        store = self.store
        with self._lock:
            if self._upscaler is None:
                self._upscaler = Upscaler(store, engine_settings(self.config))
            return self._upscaler

    @property
    def job_resources(self) -> JobResources:
        """What this process runs jobs with (the in-process runner and a Celery worker alike)."""
        upscaler = self.upscaler
        with self._lock:
            if self._job_resources is None:
                self._job_resources = JobResources(upscaler, self.files, float(self.config["PREVIEW_MIN_SECONDS"]),
                                                   self.config["WORKER_NAME"], video_settings(self.config))
            return self._job_resources

    def close(self) -> None:
        """Stop the workers and the sweeper (tests, and a clean shutdown)."""
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.stop()
        self.files.stop()

    def _preload(self) -> None:
        """Load the models the quick routes pick (noise "none"), so the first request does not pay
        for them; on a CPU this also takes the one-time measurement now, before any job waits for it."""
        models = []
        for scale, anime, noise in ROUTES:
            try:
                model = self.upscaler.plan(scale, anime, noise=noise).model
            except RemasterError:  # a route this install cannot serve shows up in /api/models
                continue
            if noise == "none" and model not in models:
                models.append(model)
        for model in models:
            try:
                self.upscaler.load(model)
            except Exception:  # a broken model shows up in /api/models; do not kill the thread
                log.exception("could not preload %s", model)


def services() -> AppServices:
    """The app's `AppServices` (inside a request or an app context)."""
    return current_app.extensions[EXTENSION]
