"""How the CPU calibration (`esrgan.runtime.choose`) measures: its test image, interleaved timing
that load cannot poison, and its ncnn candidates (which there are, how each runs, when one wins).

The shipped graph on ncnn (`esrgan.runtime.ncnn_backend`) runs in fp32 with Winograd convolutions
(fewer multiplications: the way past torch's fp32 on CPUs without native bf16) or with bf16 storage.
Each is measured in the calibration's interleaved rounds beside torch, and chosen only where it is
faithful and clearly faster, so no CPU ends up slower than torch fp32.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch.nn import functional as F

NCNN = "ncnn"
NCNN_CANDIDATES = ("ncnn-fp32", "ncnn-bf16")  # calibration names: the shipped graph on ncnn, by storage
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


def ncnn_candidate(store, model: str, name: str) -> torch.nn.Module:
    """``model``'s shipped graph on ncnn on the CPU, in the storage candidate ``name`` says."""
    from esrgan.runtime.ncnn_backend import load_network

    return load_network(store, model, None, name.split("-")[1], torch.get_num_threads())[0]


def psnr_to(out: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR (dB) of two float images in [0, 1]."""
    mse = float(((out - reference) ** 2).mean())
    return round(float("inf") if mse == 0 else 10 * float(np.log10(1 / mse)), 2)


def fastest_faithful(torch_choice: str, torch_seconds: float, fp32_seconds: float,
                     ncnn_seconds: dict[str, float] | None, ncnn_psnr: dict[str, float] | None,
                     min_speedup: float, min_psnr: float) -> str:
    """The torch choice (``torch_seconds`` per round), unless an ncnn storage is faithful (``min_psnr``
    to fp32) and clearly faster: ncnn fp32 by `NCNN_MIN_SPEEDUP` over the torch choice, bf16 storage
    by ``min_speedup`` over the best fp32 (torch's ``fp32_seconds`` or ncnn's) too."""
    chosen, best = torch_choice, torch_seconds
    seconds = ncnn_seconds or {}
    for name in NCNN_CANDIDATES:
        if name not in seconds or (ncnn_psnr or {}).get(name, 0) < min_psnr:
            continue
        if name.endswith("bf16"):
            fast = seconds[name] * min_speedup <= min(best, fp32_seconds, seconds.get("ncnn-fp32", float("inf")))
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
