"""How long work takes here: one rate per model, in seconds per processed pixel.

A processed pixel is one the network really runs over: tile windows with their context, over the
image padded to the model's size multiple (`esrgan.tiling.plan.work_pixels`), so a thin strip that costs
many times its pixels is predicted as such. Every figure in the product is in this unit: what the
engine learns from its runs (`RateStore.learn`), what ``python -m esrgan models --measure`` records
(`RateStore.record`), what the Celery workers publish through Redis, and the CPU calibration's rate
(`esrgan.runtime.choose.Calibration.seconds_per_pixel`). Before anything was measured, a model's rate is
derived from its convolution FLOPs (`prior_rate`). Estimates are a courtesy shown to people (an ETA,
the estimate before sending), never a limit.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

from esrgan.errors import ModelNotFoundError
from esrgan.models import registry
from esrgan.models.keys import ModelKey
from esrgan.runtime.choose import CALIBRATION_MODEL, CALIBRATION_ROUNDS, CALIBRATION_SIDE, cpu_candidates
from esrgan.runtime.figures import FiguresFile

log = logging.getLogger(__name__)
TORCH_BACKENDS = ("torch", "torch-cl", "compiled")  # one rate each model: the layout changes little

RATES_FILE = "rates.json"  # beside the converted weights
# Sustained convolution throughput assumed before anything on a device has been measured.
PRIOR_FLOPS_PER_SECOND = {"cpu": 60e9, "cuda": 30e12}
MODEL_LOAD_SECONDS = 1.5  # reading and placing x4plus before the calibration runs it
LEARNING_WEIGHT = 0.5  # a new run's share of the mean: one slow run under load only half counts


def rate_key(key: ModelKey, backend: str = "torch", device: str = "cpu") -> ModelKey:
    """The key of a model's rate: the model's own on torch (as recorded before backends had rates of
    their own); with the backend and the device for any other backend (ncnn on the CPU or on Vulkan)."""
    return key if backend in TORCH_BACKENDS else replace(key, backend=backend, device=device)


def running_mean(previous: float | None, measured: float) -> float:
    """The rate after one more run measured ``measured``."""
    return measured if previous is None else (1 - LEARNING_WEIGHT) * previous + LEARNING_WEIGHT * measured


def registry_flops(model: str) -> float:
    """Convolution FLOPs per input pixel of ``model`` from its registry entry, without loading it
    (a model without the figure, or not registered, counts as x4plus)."""
    try:
        known = registry.spec(model).flops_per_pixel
    except ModelNotFoundError:
        known = None
    return known if known is not None else registry.spec(CALIBRATION_MODEL).flops_per_pixel


def prior_rate(flops: float, device_type: str = "cpu", calibrated: float | None = None,
               calibration_flops: float | None = None) -> float:
    """The rate of a model of ``flops`` per pixel before any run of it was measured.

    Args:
        flops: The model's convolution FLOPs per pixel.
        device_type: ``"cpu"`` or ``"cuda"``: the throughput assumed when nothing was measured.
        calibrated: The CPU calibration's rate of x4plus, when there is one: scaled by FLOPs.
        calibration_flops: x4plus's FLOPs per pixel, counted the same way as ``flops``.
    """
    if calibrated and calibration_flops:
        return calibrated * flops / calibration_flops
    return flops / PRIOR_FLOPS_PER_SECOND.get(device_type, PRIOR_FLOPS_PER_SECOND["cpu"])


def calibration_seconds() -> float:
    """About how long the one-time CPU measurement (`esrgan.runtime.choose.calibrate_cpu`) takes here: a
    warm-up, then the timed rounds of every torch precision it runs natively on a small x4plus input."""
    candidates = len(cpu_candidates())
    rounds = CALIBRATION_ROUNDS if candidates > 1 else 1
    rate = prior_rate(registry_flops(CALIBRATION_MODEL))
    return MODEL_LOAD_SECONDS + (candidates * rounds + 1) * rate * CALIBRATION_SIDE**2


class RateStore:
    """Seconds per processed pixel of each model on this machine, by the model's identity
    (`esrgan.models.keys.ModelKey`). Thread-safe.

    Two sources, the first that knows a model wins: what this process's runs measured (a running
    mean, in memory: it follows the machine's load), then what a deliberate measurement recorded
    in ``path`` (kept across restarts, `esrgan.runtime.figures`).

    Args:
        path: The JSON file of recorded rates; None keeps nothing on disk.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.file = FiguresFile(path)
        self._learned: dict[ModelKey, float] = {}
        self._lock = threading.Lock()

    def get(self, key: ModelKey) -> float | None:
        """The model's rate, or None when nothing has measured it yet."""
        with self._lock:
            learned = self._learned.get(key)
        return learned if learned is not None else self.recorded(key)

    def learn(self, key: ModelKey, seconds: float, pixels: int) -> float:
        """Take in a run of the model that processed ``pixels`` in ``seconds``; returns the new rate."""
        measured = max(seconds, 1e-6) / max(pixels, 1)
        with self._lock:
            self._learned[key] = rate = running_mean(self._learned.get(key), measured)
        return rate

    def recorded(self, key: ModelKey) -> float | None:
        """The rate a measurement recorded in the file, or None."""
        entry = self.file.get(key)
        value = entry.get("seconds_per_pixel") if entry is not None else None
        return float(value) if isinstance(value, (int, float)) else None

    def record(self, key: ModelKey, rate: float, device: str, precision: str) -> None:
        """Keep a deliberately measured rate in the file (and use it from now on)."""
        with self._lock:
            self._learned.pop(key, None)
            self.file.put(key, {"seconds_per_pixel": rate, "device": device, "precision": precision,
                                "measured_at": int(time.time())})


def flops_per_pixel(module: torch.nn.Module, size_multiple: int = 1) -> float:
    """Convolution FLOPs (2 per multiply-add) per input pixel, counted on a small probe input."""
    side = 16 * size_multiple
    total = 0.0

    def count(layer: torch.nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = layer.kernel_size
        total += 2.0 * output.numel() * (layer.in_channels // layer.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        parameter = next(module.parameters())
        with torch.inference_mode():
            module(torch.zeros(1, 3, side, side, device=parameter.device, dtype=parameter.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return total / (side * side)
