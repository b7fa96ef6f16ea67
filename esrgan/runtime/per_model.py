"""Which backend and precision each model runs in on this CPU: measured on that model, never guessed.

The candidates (`esrgan.runtime.measure`) are torch fp32 channels-last, torch bf16 where the CPU runs
it natively, and, for a model whose shipped ncnn graph is installed (with the ncnn wheel), that graph
on ncnn in fp32 (Winograd) and in bf16 storage. Networks differ in how they take each: ncnn's
Winograd wins big on x4plus's 3x3 convolutions and not on a compact model; bf16 rounding spoils some
models and not others. So every model is measured once, by itself, in every candidate this CPU has:
on a real photo crop (``esrgan/data/precision_crop.png``), the candidates interleaved, the fastest
round of each counting (load only ever adds time), each output compared to torch fp32's in 8-bit
PSNR (what a saved image keeps). The model then runs in the fastest faithful candidate
(`esrgan.runtime.measure.fastest_faithful`, at least `MIN_MODEL_PSNR`): torch bf16 or ncnn bf16
storage only where `MIN_SPEEDUP` faster, ncnn fp32 where `NCNN_MIN_SPEEDUP` faster than the torch
choice, so no model runs slower than its own torch fp32.

The engine measures a model lazily, the first time it runs with precision ``auto`` on the CPU
(that model only, while the job says "loading"), and ``python -m esrgan models --measure`` measures
them all. Where the CPU offers one candidate only (torch fp32: an AVX2-only CPU and a user
checkpoint, which has no ncnn graph), nothing is measured. The figures are kept beside the rates
(``weights/converted/precision.json``, `esrgan.runtime.figures`; the file's name is from when it held
bf16 figures only, and such older records count as never measured) by the model's identity (a
checkpoint given by its path is measured from that file), per CPU, kernel cap and torch (and ncnn)
version (`esrgan.runtime.choose.machine_key`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from esrgan.models.keys import ModelKey
from esrgan.models.store import LoadedModel
from esrgan.runtime.choose import DTYPES, MIN_SPEEDUP, cpu_candidates, machine_key
from esrgan.runtime.figures import FiguresFile
from esrgan.runtime.measure import NCNN, TORCH, fastest_faithful, ncnn_candidates, runs_as, time_interleaved
from esrgan.runtime.ncnn_backend import NetworkCache, has_shipped_graph

log = logging.getLogger(__name__)

PRECISION_FILE = "precision.json"  # beside the converted weights and rates.json
MIN_MODEL_PSNR = 45.0  # 8-bit PSNR to torch fp32's output a model must keep in a candidate to run in it
CROP = Path(__file__).resolve().parent.parent / "data" / "precision_crop.png"  # 48x48 of a real photo
PSNR_CAP = 99.0  # identical outputs: a finite figure for JSON
TIMED_ROUNDS = 2  # interleaved timed runs of each candidate, after an untimed warm-up on a corner
WARM_UP_SIDE = 16  # the corner that warms each candidate's kernels (and ncnn's allocator), untimed
ENGINES = (TORCH, NCNN)


@dataclass(frozen=True)
class ModelFigures:
    """One model's figures on this machine: every candidate it was measured in.

    Attributes:
        model: The model's key (`esrgan.models.keys.ModelKey.text`): its name, or a checkpoint's path and hash.
        machine: `esrgan.runtime.choose.machine_key` when measured.
        seconds: Candidate (``"fp32"``, ``"bf16"``, ``"ncnn-fp32"``, ``"ncnn-bf16"``) -> its fastest
            round over the crop.
        psnr: Candidate -> 8-bit PSNR of its output to torch fp32's (torch fp32 itself is not listed).
        measured_at: Unix time.
    """

    model: str
    machine: str
    seconds: dict[str, float]
    psnr: dict[str, float]
    measured_at: float

    def chosen(self, engines: tuple[str, ...] = ENGINES) -> str:
        """The fastest faithful candidate among those of ``engines`` (``("torch",)``: the user forced torch)."""
        allowed = {name: s for name, s in self.seconds.items() if runs_as(name)[0] in engines}
        return fastest_faithful(allowed, self.psnr, MIN_SPEEDUP, MIN_MODEL_PSNR)

    def __str__(self) -> str:
        fp32 = self.seconds["fp32"]
        others = ", ".join(f"{name} {s:.2f}s ({fp32 / max(s, 1e-9):.2f}x) at {self.psnr.get(name, 0):.1f} dB"
                           for name, s in self.seconds.items() if name != "fp32")
        return f"torch fp32 {fp32:.2f}s" + (f", {others}" if others else "") + f" -> {self.chosen()}"

    def as_row(self) -> dict:
        """The figures as the models listing shows them: what the model runs on, and every candidate's
        speed relative to torch fp32 and its PSNR to it."""
        engine, precision = runs_as(self.chosen())
        fp32 = self.seconds["fp32"]
        candidates = {name: {"seconds": seconds, "speedup": round(fp32 / max(seconds, 1e-9), 2),
                             "psnr": self.psnr.get(name)} for name, seconds in self.seconds.items()}
        return {"backend": engine, "precision": precision, "candidates": candidates,
                "bf16_psnr": self.psnr.get("bf16"), "bf16_speedup": candidates.get("bf16", {}).get("speedup")}


EMPTY_ROW = {"backend": None, "precision": None, "candidates": None, "bf16_psnr": None, "bf16_speedup": None}


def model_candidates(store, model: str) -> tuple[str, ...]:
    """The ways this CPU can run ``model``: torch's precisions (`esrgan.runtime.choose.cpu_candidates`)
    and, where its shipped graph and the ncnn wheel are installed, ncnn's storages."""
    return (*cpu_candidates(), *(ncnn_candidates() if has_shipped_graph(store, model) else ()))


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


def load_candidate(store, model: str, candidate: str, networks: NetworkCache) -> LoadedModel:
    """``model`` on the CPU as ``candidate`` runs it (torch channels-last, or its graph on ncnn)."""
    engine, precision = runs_as(candidate)
    if engine == NCNN:
        return networks.load(store, model, torch.device("cpu"), precision)
    return store.load(model, "cpu", DTYPES[precision], channels_last=True)


def measure_model(store, key: ModelKey, candidates: tuple[str, ...], networks: NetworkCache | None = None,
                  rounds: int = TIMED_ROUNDS) -> ModelFigures:
    """Run the model over the crop in every candidate on the CPU, interleaved, and compare each to torch fp32.

    Args:
        store: The `esrgan.models.store.ModelStore` that loads ``key.model``.
        key: The model (`esrgan.models.store.ModelStore.key`).
        candidates: The candidates to measure (`model_candidates`), torch ``"fp32"`` among them.
        networks: Where ncnn's networks are loaded (and kept, for the runs that follow).
        rounds: Interleaved timed rounds of each candidate; the fastest counts.

    Raises:
        RemasterError: The model cannot be loaded (BackendUnavailableError: not on ncnn).
    """
    networks = networks or NetworkCache()
    loaded = {name: load_candidate(store, key.model, name, networks) for name in candidates}
    multiple = max(model.size_multiple for model in loaded.values())
    x = crop_tensor()
    pad_h, pad_w = -x.shape[2] % multiple, -x.shape[3] % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    inputs = {name: x.to(model.dtype).to(memory_format=torch.channels_last if model.channels_last
                                          else torch.contiguous_format) for name, model in loaded.items()}
    outputs: dict[str, np.ndarray] = {}

    def runner(name: str) -> Callable[[], None]:
        def run() -> None:
            outputs[name] = loaded[name].module(inputs[name]).float().permute(0, 2, 3, 1).numpy()
        return run

    corner = -(-WARM_UP_SIDE // multiple) * multiple
    with torch.inference_mode():  # straight through each network: no tiler, nothing but the network timed
        for name, model in loaded.items():
            model.module(inputs[name][..., :corner, :corner])
        seconds = time_interleaved({name: runner(name) for name in loaded}, rounds)
    psnr = {name: float(psnr_8bit(outputs[name], outputs["fp32"])) for name in loaded if name != "fp32"}
    result = ModelFigures(key.text, machine_key(), {name: round(s, 4) for name, s in seconds.items()}, psnr,
                          round(time.time(), 1))
    log.info("%s measured: %s", result.model, result)
    return result


def read_figures(entry: dict | None) -> ModelFigures | None:
    """A record read back, or None where it is not one this version writes (older bf16-only records)."""
    if entry is None:
        return None
    try:
        found = ModelFigures(**entry)
    except TypeError:
        return None
    valid = isinstance(found.seconds, dict) and "fp32" in found.seconds and isinstance(found.psnr, dict)
    return found if valid else None


class ModelChoices:
    """The measured figures of each model on this machine, kept in a JSON file (`FiguresFile`) by
    the model's identity (`esrgan.models.keys.ModelKey`), and the way each model runs that they
    choose. Thread-safe; a model is measured once even when several threads ask for it at the same time.

    Args:
        path: The JSON file (None: kept in memory only).
        networks: Where ncnn's networks are loaded while measuring (the engine's own cache, so the
            run that follows finds its network loaded).
    """

    def __init__(self, path: Path | None, networks: NetworkCache | None = None) -> None:
        self.file = FiguresFile(path)
        self.networks = networks or NetworkCache()
        self._lock = threading.Lock()
        self._chosen: dict[tuple[ModelKey, tuple[str, ...]], tuple[str, str]] = {}  # read or measured once

    def get(self, key: ModelKey, candidates: tuple[str, ...] | None = None) -> ModelFigures | None:
        """The model's figures measured on this machine as it is now, or None; with ``candidates``,
        only figures of exactly those (a graph installed or removed since makes them stale)."""
        found = read_figures(self.file.get(key))
        if found is None or found.machine != machine_key():
            return None
        return found if candidates is None or set(found.seconds) == set(candidates) else None

    def measured(self, store, model: str, candidates: tuple[str, ...] | None = None) -> ModelFigures:
        """The model's figures, measuring them now (`measure_model`) if this machine has none of
        ``candidates`` (default `model_candidates`)."""
        key = store.key(model)
        candidates = candidates or model_candidates(store, model)
        with self._lock:
            found = self.get(key, candidates)
            if found is None:
                found = measure_model(store, key, candidates, self.networks)
                self.file.put(key, asdict(found))
            return found

    def choose(self, store, model: str, fallback: str, engines: tuple[str, ...] = ENGINES,
               measure: bool = False) -> tuple[str, str]:
        """(engine, precision) ``model`` (a name or a checkpoint path) runs in on the CPU: the fastest
        faithful candidate of ``engines`` by its figures. ``measure``: measure a model this machine
        has no figures for now (a run does; an estimate does not, and runs on torch in ``fallback``,
        the calibration's precision). A model with one candidate (torch fp32) is never measured."""
        known = (store.key(model), engines)
        if known in self._chosen:
            return self._chosen[known]
        candidates = model_candidates(store, model)
        if len([name for name in candidates if runs_as(name)[0] in engines]) == 1:
            chosen = TORCH, "fp32"
        else:
            figures = self.measured(store, model, candidates) if measure else self.get(known[0], candidates)
            if figures is None:
                return TORCH, fallback  # not kept: the model's first run measures it
            chosen = runs_as(figures.chosen(engines))
        self._chosen[known] = chosen
        return chosen
