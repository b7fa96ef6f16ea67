"""How long work will take on this machine: the rates finished jobs measured, before that the CPU
calibration or the models' FLOPs. Estimates are a courtesy shown to people (the ETA, the estimate
before sending), never a limit."""

from __future__ import annotations

import threading

from esrgan.pipeline import Upscaler, flops_per_pixel
from esrgan.speed import CALIBRATION_MODEL, CALIBRATION_ROUNDS, CALIBRATION_SIDE, cpu_candidates

# Sustained convolution throughput assumed before anything on a device has been measured.
PRIOR_FLOPS_PER_SECOND = {"cpu": 60e9, "cuda": 30e12}
# Convolution FLOPs per input pixel (`esrgan.pipeline.flops_per_pixel`) of the shipped models, for
# a process that loads no model (a web node in front of Celery workers); others count as x4plus.
FLOPS_PER_PIXEL = {"realesrgan-x4plus": 35.9e6, "realesrgan-x4plus-anime": 11.4e6, "realesr-animevideov3": 1.24e6}
MODEL_LOAD_SECONDS = 1.5  # reading and placing x4plus before the calibration runs it


def prior_seconds(model: str, pixels: int, device_type: str = "cpu") -> float:
    """Seconds for ``pixels`` input pixels of ``model`` before anything was measured."""
    flops = FLOPS_PER_PIXEL.get(model, FLOPS_PER_PIXEL[CALIBRATION_MODEL])
    return flops * pixels / PRIOR_FLOPS_PER_SECOND.get(device_type, PRIOR_FLOPS_PER_SECOND["cpu"])


def calibration_seconds() -> float:
    """About how long the one-time CPU measurement (`esrgan.speed.calibrate_cpu`) takes here: a
    warm-up, then the timed rounds of every candidate precision on a small x4plus input."""
    candidates = len(cpu_candidates())
    rounds = CALIBRATION_ROUNDS if candidates > 1 else 1
    return MODEL_LOAD_SECONDS + (candidates * rounds + 1) * prior_seconds(CALIBRATION_MODEL, CALIBRATION_SIDE**2)


class SpeedBook:
    """Seconds per processed pixel of each model in this process: measured by finished jobs, before
    that derived from the CPU calibration (x4plus) by the models' FLOPs. Thread-safe.

    Args:
        upscaler: The engine whose runs are measured (its work count is the basis of every rate).
    """

    def __init__(self, upscaler: Upscaler) -> None:
        self.upscaler = upscaler
        self._seconds_per_pixel: dict[str, float] = {}
        self._flops_per_pixel: dict[str, float] = {}
        self._lock = threading.Lock()

    def seconds(self, model: str, width: int, height: int) -> float:
        """Seconds the upscaling of a ``width`` x ``height`` image with ``model`` should take."""
        with self._lock:
            rate = self._seconds_per_pixel.get(model)
        if rate is None:
            rate = self._prior(model)
        return rate * self._work(model, width, height)

    def learn(self, model: str, width: int, height: int, seconds: float) -> None:
        """Take in what a finished run took (a running mean, so one slow run under load only half counts)."""
        measured = max(seconds, 1e-3) / max(self._work(model, width, height), 1)
        with self._lock:
            previous = self._seconds_per_pixel.get(model)
            self._seconds_per_pixel[model] = measured if previous is None else 0.5 * (previous + measured)

    def _work(self, model: str, width: int, height: int) -> int:
        return self.upscaler.work_pixels(width, height, model)

    def _model_flops(self, model: str) -> float:
        with self._lock:
            known = self._flops_per_pixel.get(model)
        if known is None:
            loaded = self.upscaler.load(model)
            known = flops_per_pixel(loaded.module, loaded.size_multiple)
            with self._lock:
                self._flops_per_pixel[model] = known
        return known

    def _prior(self, model: str) -> float:
        runtime = self.upscaler.runtime if self.upscaler.calibrated else None
        if runtime is not None and runtime.seconds_per_pixel:
            return runtime.seconds_per_pixel * self._model_flops(model) / self._model_flops(CALIBRATION_MODEL)
        return self._model_flops(model) / PRIOR_FLOPS_PER_SECOND[self.upscaler.device.type]
