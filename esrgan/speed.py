"""Choosing the fastest faithful way to run on this machine, by measurement.

Precision and memory layout are settings the user can force (``--precision``, ``--backend``).
Left on ``auto``, the CPU choice comes from a short calibration on first use: the x4plus model runs
a small procedural test image in fp32 and in bfloat16 (both channels-last); bfloat16 is chosen only
if it is clearly faster (oneDNN uses native bf16 instructions where the CPU has them, e.g.
AVX512-BF16, and is slower than fp32 where it must emulate them) and stays within
`MIN_FAITHFUL_PSNR` of the fp32 output. The verdict is recorded in ``weights/converted/`` per CPU
and torch version. CUDA uses fp16, channels-last.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from esrgan.errors import RemasterError

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
Backend = Literal["auto", "torch", "torch-cl", "compiled"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
BACKENDS: tuple[str, ...] = ("auto", "torch", "torch-cl", "compiled")  # compiled: esrgan/compiled.py
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_FAITHFUL_PSNR = 40.0  # dB to the fp32 output: below this a setting is not the default
MIN_SPEEDUP = 1.2  # a lower precision must win by this much to be worth its (small) error
CALIBRATION_MODEL = "realesrgan-x4plus"
CALIBRATION_SIDE = 64


@dataclass(frozen=True)
class Runtime:
    """How the networks run: dtype and memory layout, and why."""

    precision: str
    channels_last: bool
    reason: str
    seconds_per_pixel: float | None = None  # x4plus at 4x, as measured by the calibration

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]

    @property
    def backend(self) -> str:
        return "torch-cl" if self.channels_last else "torch"


@dataclass(frozen=True)
class Calibration:
    machine: str
    fp32_seconds: float
    bf16_seconds: float
    bf16_psnr: float
    chosen: str


def machine_key() -> str:
    """What a calibration is valid for: the CPU model, its torch kernels, and the torch version."""
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    kernels = torch.backends.cpu.get_cpu_capability()
    return f"{cpu} | {kernels} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def test_image(side: int = CALIBRATION_SIDE) -> torch.Tensor:
    """A reproducible photo-like image: smooth colour fields, edges and fine noise."""
    rng = np.random.default_rng(1234)
    coarse = torch.from_numpy(rng.random((1, 3, side // 8, side // 8), dtype=np.float32))
    image = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    image = image + 0.05 * torch.from_numpy(rng.standard_normal((1, 3, side, side), dtype=np.float32))
    image[..., side // 3 : side // 2, :] *= 0.3  # a hard edge
    return image.clamp(0, 1)


def _time(model: torch.nn.Module, x: torch.Tensor, repeats: int = 2) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        model(x[..., :16, :16])  # warm the kernels
        best, out = float("inf"), None
        for _ in range(repeats):
            started = time.perf_counter()
            out = model(x)
            best = min(best, time.perf_counter() - started)
    return best, out.float().clamp(0, 1)


def calibrate_cpu(store, record: Path | None) -> Calibration:
    """Measure fp32 against bf16 (channels-last) on the CPU; read or write the record."""
    key = machine_key()
    if record is not None and record.is_file():
        try:
            saved = json.loads(record.read_text())
            if saved.get("machine") == key:
                return Calibration(**saved)
        except (OSError, ValueError, TypeError):
            pass
    x = test_image().to(memory_format=torch.channels_last)
    fp32 = store.load(CALIBRATION_MODEL, "cpu", torch.float32, channels_last=True).module
    fp32_seconds, reference = _time(fp32, x)
    try:
        bf16 = store.load(CALIBRATION_MODEL, "cpu", torch.bfloat16, channels_last=True).module
        bf16_seconds, out = _time(bf16, x.to(torch.bfloat16))
        mse = float(((out - reference) ** 2).mean())
        psnr = float("inf") if mse == 0 else 10 * np.log10(1 / mse)
    except RuntimeError as exc:  # no bf16 kernels at all on this CPU
        log.info("bf16 unavailable on this CPU: %s", exc)
        bf16_seconds, psnr = float("inf"), 0.0
    faster = fp32_seconds / bf16_seconds >= MIN_SPEEDUP
    chosen = "bf16" if faster and psnr >= MIN_FAITHFUL_PSNR else "fp32"
    result = Calibration(key, round(fp32_seconds, 4), round(bf16_seconds, 4), round(psnr, 2), chosen)
    log.info("CPU calibration: fp32 %.3fs, bf16 %.3fs (%.1f dB) -> %s", fp32_seconds, bf16_seconds, psnr, chosen)
    if record is not None:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(asdict(result)))
        except OSError:
            log.warning("could not record the calibration in %s", record)
    return result


def choose_runtime(device: torch.device, precision: str = "auto", backend: str = "auto", store=None,
                   record: Path | None = None) -> Runtime:
    """The precision and layout to run with: forced by the user, or chosen by measurement."""
    if precision not in PRECISIONS or backend not in BACKENDS:
        raise ValueError(f"precision must be one of {PRECISIONS}, backend one of {BACKENDS}")
    channels_last = backend != "torch"
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("fp16 runs on CUDA only; on the CPU use fp32 or bf16")
        return Runtime(precision, channels_last, "chosen by the user")
    if device.type == "cuda":
        return Runtime("fp16", channels_last, "fp16 on CUDA")
    if store is None:
        return Runtime("fp32", channels_last, "no calibration")
    try:
        calibration = calibrate_cpu(store, record)
    except RemasterError as exc:  # e.g. no x4plus weights to measure with
        return Runtime("fp32", channels_last, f"not calibrated: {exc}")
    reason = (f"measured here: fp32 {calibration.fp32_seconds:.2f}s, bf16 {calibration.bf16_seconds:.2f}s "
              f"at {calibration.bf16_psnr:.1f} dB to fp32")
    seconds = calibration.bf16_seconds if calibration.chosen == "bf16" else calibration.fp32_seconds
    return Runtime(calibration.chosen, channels_last, reason, seconds / CALIBRATION_SIDE**2)
