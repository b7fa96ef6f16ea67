"""How the CPU is measured (`esrgan.runtime.choose`, `esrgan.runtime.per_model`): the candidates,
interleaved timing that load cannot poison, and when a candidate wins.

A candidate is one way of running a network on the CPU: torch ``fp32`` (channels-last, the
reference every other is compared to), torch ``bf16`` (only where the CPU runs it natively), and the
shipped graph on ncnn (`esrgan.runtime.ncnn_backend`) in fp32 with Winograd convolutions (fewer
multiplications: the way past torch's fp32 on CPUs without native bf16) or with bf16 storage. Each
is timed in the same interleaved rounds and chosen only where it is faithful and clearly faster
(`fastest_faithful`), so nothing ends up slower than torch fp32.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch.nn import functional as F

NCNN = "ncnn"
TORCH = "torch"
TORCH_CANDIDATES = ("fp32", "bf16")  # torch on the CPU, channels-last, by precision
NCNN_CANDIDATES = ("ncnn-fp32", "ncnn-bf16")  # the shipped graph on ncnn, by storage
NCNN_MIN_SPEEDUP = 1.05  # ncnn fp32 must beat the torch choice by this much (noise, not a real gain)


def ncnn_candidates() -> tuple[str, ...]:
    """The ncnn storages worth measuring: both where the ncnn wheel is installed, else none."""
    try:
        import ncnn  # noqa: F401
    except ImportError:
        return ()
    return NCNN_CANDIDATES


def ncnn_version() -> str:
    """`` | ncnn <version>`` for the calibration's machine key (a new ncnn measures again), or ""."""
    try:
        from importlib.metadata import version

        return f" | ncnn {version('ncnn')}"
    except Exception:  # noqa: BLE001 - not installed, or no metadata: no ncnn figures either
        return ""


def psnr_to(out: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR (dB) of two float images in [0, 1]."""
    mse = float(((out - reference) ** 2).mean())
    return round(float("inf") if mse == 0 else 10 * float(np.log10(1 / mse)), 2)


def runs_as(candidate: str) -> tuple[str, str]:
    """(engine, precision) of a candidate: ``"ncnn-bf16"`` is ``("ncnn", "bf16")``, ``"fp32"`` ``("torch", "fp32")``."""
    engine, _, precision = candidate.rpartition("-")
    return engine or TORCH, precision


def fastest_faithful(seconds: Mapping[str, float], psnr: Mapping[str, float], min_speedup: float,
                     min_psnr: float) -> str:
    """The candidate to run, from each one's fastest round (``seconds``, torch ``"fp32"`` among them)
    and its PSNR to torch fp32's output (``psnr``): torch fp32, or torch bf16 where it is faithful
    (``min_psnr``) and ``min_speedup`` faster; then ncnn fp32 where it beats that torch choice by
    `NCNN_MIN_SPEEDUP`, and ncnn bf16 storage where it is faithful and ``min_speedup`` faster than
    the best fp32 (torch's or ncnn's) and than the choice so far."""
    fp32 = seconds["fp32"]
    chosen, best = "fp32", fp32
    if "bf16" in seconds and psnr.get("bf16", 0) >= min_psnr and seconds["bf16"] * min_speedup <= fp32:
        chosen, best = "bf16", seconds["bf16"]
    for name in NCNN_CANDIDATES:
        if name not in seconds or psnr.get(name, 0) < min_psnr:
            continue
        if name.endswith("bf16"):
            fast = seconds[name] * min_speedup <= min(best, fp32, seconds.get("ncnn-fp32", float("inf")))
        else:
            fast = seconds[name] * NCNN_MIN_SPEEDUP <= best
        if fast:
            chosen, best = name, seconds[name]
    return chosen


def test_image(side: int) -> torch.Tensor:
    """A reproducible photo-like image: smooth colour fields, edges and fine noise."""
    rng = np.random.default_rng(1234)
    coarse = torch.from_numpy(rng.random((1, 3, max(side // 8, 2), max(side // 8, 2)), dtype=np.float32))
    image = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    image = image + 0.05 * torch.from_numpy(rng.standard_normal((1, 3, side, side), dtype=np.float32))
    image[..., side // 3 : side // 2, :] *= 0.3  # a hard edge
    return image.clamp(0, 1)


def time_interleaved(runs: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """The fastest of ``rounds`` timed calls of each run, the runs taking turns (ABBA order).

    Args:
        runs: Name -> a call to time (already warmed up).
        rounds: Timed calls of each run.
    """
    best = dict.fromkeys(runs, float("inf"))
    names = list(runs)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            runs[name]()
            best[name] = min(best[name], time.perf_counter() - started)
    return best
