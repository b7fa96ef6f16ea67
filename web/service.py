"""The shared resources of the app (files, engine, job runner), as one Flask extension."""

from __future__ import annotations

import logging
import threading

import torch
from flask import Flask, current_app

from esrgan.pipeline import UpscaleOptions, Upscaler, flops_per_pixel
from esrgan.registry import ROUTES
from esrgan.weights import ModelStore
from web.jobs import InProcessRunner, JobRunner
from web.storage import FileStore

log = logging.getLogger(__name__)


class Remaster:
    """Holds what every request shares; reach it with `remaster()` inside a request."""

    files: FileStore
    upscaler: Upscaler
    runner: JobRunner

    def init_app(self, app: Flask) -> None:
        cfg = app.config
        if cfg["TORCH_THREADS"]:
            torch.set_num_threads(int(cfg["TORCH_THREADS"]))
        self.files = FileStore(cfg["UPLOAD_FOLDER"], float(cfg["FILE_TTL_SECONDS"]))
        options = UpscaleOptions(device=cfg["DEVICE"], precision=cfg["PRECISION"], backend=cfg["BACKEND"],
                                 tile=cfg["TILE"],
                                 max_output_pixels=int(cfg["MAX_OUTPUT_PIXELS"]))
        self.upscaler = Upscaler(ModelStore(cfg["WEIGHTS_FOLDER"]), options)
        if cfg["BROKER_URL"]:
            from web.distributed import CeleryRunner

            self.runner = CeleryRunner(cfg["BROKER_URL"], self.files, int(cfg["MAX_QUEUE"]),
                                       bool(cfg["ROUTE_BY_DEVICE"]), self._flops_per_pixel)
        else:
            self.runner = InProcessRunner(self.upscaler, self.files, int(cfg["WORKERS"]),
                                          int(cfg["MAX_QUEUE"]))
        self.runner.start()
        self.files.start_sweeper()
        if cfg["PRELOAD_MODELS"]:
            threading.Thread(target=self._preload, name="preload-models", daemon=True).start()
        app.extensions["remaster"] = self

    def _flops_per_pixel(self, model: str) -> float:
        loaded = self.upscaler.load(model)
        return flops_per_pixel(loaded.module, loaded.size_multiple)

    def close(self) -> None:
        """Stop the workers and the sweeper (tests, and a clean shutdown)."""
        self.runner.stop()
        self.files.stop()

    def _preload(self) -> None:
        """Load every model a route may pick, so the first request does not pay for it."""
        for scale, anime in ROUTES:
            try:
                self.upscaler.load(self.upscaler.plan(scale, anime).model)
            except Exception:  # a missing model shows up in /api/models; do not kill the thread
                log.exception("could not preload the %sx%s model", scale, " anime" if anime else "")


def remaster() -> Remaster:
    return current_app.extensions["remaster"]
