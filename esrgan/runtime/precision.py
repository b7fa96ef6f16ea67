"""Which precision each model runs in on this CPU: bf16 only for the models that stay faithful in it.

The CPU calibration (`esrgan.runtime.choose`) says whether bf16 is native and faster here, for x4plus.
Each network reacts to bf16 rounding differently, so on such a CPU every model is measured once, by
itself: its fp32 and bf16 outputs on a real photo crop (``esrgan/data/precision_crop.png``), compared
in 8-bit PSNR. Only a model that keeps `MIN_MODEL_PSNR` runs in bf16; the others run in fp32. The
engine measures a model lazily, the first time it runs with precision ``auto`` on a CPU whose
calibration chose bf16 (that one model only), and ``python -m esrgan models --measure`` measures
them all. The figures are kept beside the rates (``weights/converted/precision.json``,
`esrgan.runtime.figures`) by the model's identity (a checkpoint given by its path is measured from
that file), per CPU, kernel cap and torch version (`esrgan.runtime.choose.machine_key`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from esrgan.models.keys import ModelKey
from esrgan.runtime.choose import DTYPES, cpu_candidates, machine_key, native_bf16
from esrgan.runtime.figures import FiguresFile
from esrgan.runtime.measure import time_interleaved

log = logging.getLogger(__name__)

PRECISION_FILE = "precision.json"  # beside the converted weights and rates.json
MIN_MODEL_PSNR = 45.0  # 8-bit PSNR of bf16 to fp32 a model must keep to run in bf16
CROP = Path(__file__).resolve().parent.parent / "data" / "precision_crop.png"  # 48x48 of a real photo
PSNR_CAP = 99.0  # identical outputs: a finite figure for JSON
TIMED_ROUNDS = 2  # interleaved runs of each precision; the first warms the kernels


@dataclass(frozen=True)
class ModelPrecision:
    """One model's bf16 figures on this machine, measured against its own fp32 output.

    Attributes:
        model: The model's key (`esrgan.models.keys.ModelKey.text`): its name, or a checkpoint's path and hash.
        machine: `esrgan.runtime.choose.machine_key` when measured.
        psnr: 8-bit PSNR of the bf16 output to the fp32 output (dB).
        fp32_seconds, bf16_seconds: The faster of two interleaved runs of each over the crop.
        measured_at: Unix time.
    """

    model: str
    machine: str
    psnr: float
    fp32_seconds: float
    bf16_seconds: float
    measured_at: float

    @property
    def chosen(self) -> str:
        return "bf16" if self.psnr >= MIN_MODEL_PSNR else "fp32"

    @property
    def speedup(self) -> float:
        """How many times faster bf16 ran than fp32 (a figure, not a verdict: the CPU calibration's is)."""
        return self.fp32_seconds / max(self.bf16_seconds, 1e-9)

    def __str__(self) -> str:
        return f"bf16 {self.psnr:.1f} dB to fp32, {self.speedup:.2f}x its speed -> {self.chosen}"

    def as_row(self) -> dict:
        """The figures as the models listing shows them."""
        return {"bf16_psnr": self.psnr, "bf16_speedup": round(self.speedup, 2), "precision": self.chosen}


def psnr_8bit(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two images in [0, 1] after both are rounded to 8 bits, as images are saved."""
    qa = np.round(np.clip(a, 0, 1) * 255).astype(np.float64)
    qb = np.round(np.clip(b, 0, 1) * 255).astype(np.float64)
    mse = float(((qa - qb) ** 2).mean())
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, round(10 * np.log10(255.0**2 / mse), 2))


def crop_tensor() -> torch.Tensor:
    """The real photo crop, (1, 3, H, W) float32 in [0, 1]."""
    with Image.open(CROP) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


def measure_model(store, key: ModelKey, candidates: tuple[str, ...] | None = None) -> ModelPrecision:
    """Run the model over the crop in fp32 and in bf16 on the CPU (channels-last) and compare.

    Args:
        store: The `esrgan.models.store.ModelStore` that loads ``key.model``.
        key: The model (`esrgan.models.store.ModelStore.key`).
        candidates: The precisions this CPU runs natively (`esrgan.runtime.choose.cpu_candidates`
            when None).

    Raises:
        RuntimeError: bf16 is not a candidate (it is never measured where it would be emulated).
        RemasterError: The model cannot be loaded.
    """
    if "bf16" not in (candidates or cpu_candidates()):
        raise RuntimeError(f"bf16 is not measured on this CPU: {native_bf16()[1]}")
    fp32 = store.load(key.model, "cpu", DTYPES["fp32"], channels_last=True)
    bf16 = store.load(key.model, "cpu", DTYPES["bf16"], channels_last=True)
    x = crop_tensor()
    multiple = fp32.size_multiple
    pad_h, pad_w = -x.shape[2] % multiple, -x.shape[3] % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    x = x.to(memory_format=torch.channels_last)
    modules = {"fp32": fp32.module, "bf16": bf16.module}
    inputs = {name: x.to(DTYPES[name]) for name in modules}
    outputs: dict[str, np.ndarray] = {}

    def runner(name: str):
        def run() -> None:
            outputs[name] = modules[name](inputs[name]).float().permute(0, 2, 3, 1).numpy()
        return run

    with torch.inference_mode():  # ABBA over two rounds: each one's first run warms it, the fastest counts
        seconds = time_interleaved({name: runner(name) for name in modules}, TIMED_ROUNDS)
    result = ModelPrecision(key.text, machine_key(), psnr_8bit(outputs["bf16"], outputs["fp32"]),
                            round(seconds["fp32"], 4), round(seconds["bf16"], 4), round(time.time(), 1))
    log.info("%s in bf16: %.1f dB to fp32, %.2fx its speed -> %s", result.model, result.psnr, result.speedup,
             result.chosen)
    return result


class PrecisionStore:
    """The measured figures of each model on this machine, kept in a JSON file (`FiguresFile`) by
    the model's identity (`esrgan.models.keys.ModelKey`). Thread-safe; a model is measured once
    even when several threads ask for it at the same time.

    Args:
        path: The JSON file (None: kept in memory only).
    """

    def __init__(self, path: Path | None) -> None:
        self.file = FiguresFile(path)
        self._lock = threading.Lock()

    def get(self, key: ModelKey) -> ModelPrecision | None:
        """The model's figures measured on this machine as it is now, or None."""
        entry = self.file.get(key)
        try:
            found = ModelPrecision(**entry) if entry is not None else None
        except TypeError:
            return None
        return found if found is not None and found.machine == machine_key() else None

    def measured(self, store, key: ModelKey, candidates: tuple[str, ...] | None = None) -> ModelPrecision:
        """The model's figures, measuring them now (`measure_model`) if this machine has none."""
        with self._lock:
            found = self.get(key)
            if found is None:
                found = measure_model(store, key, candidates)
                self.file.put(key, asdict(found))
            return found

    def choose(self, store, model: str, runtime_precision: str, automatic: bool, measure: bool,
               candidates: tuple[str, ...] | None = None) -> str:
        """The precision ``model`` (a name or a checkpoint path) runs in: the runtime's, except where
        the runtime chose bf16 by itself (``automatic``) and the model's figures say it is not
        faithful in it. ``measure``: measure a model this machine has no figures for now (a run
        does; an estimate does not). ``candidates``: the precisions this CPU runs natively
        (`esrgan.runtime.choose.cpu_candidates` when None)."""
        if runtime_precision != "bf16" or not automatic:
            return runtime_precision
        if "bf16" not in (candidates or cpu_candidates()):  # emulated here (e.g. under ONEDNN_MAX_CPU_ISA caps)
            return "fp32"
        key = store.key(model)
        figures = self.measured(store, key, candidates) if measure else self.get(key)
        return figures.chosen if figures is not None else runtime_precision
