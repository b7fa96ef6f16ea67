"""The opt-in compiled backend: fixed tile shapes compiled by torch.compile (inductor).

On CUDA this is ``mode="max-autotune"`` (Triton kernels chosen by measurement, CUDA graphs) in
fp16, channels-last; on the CPU plain inductor (max-autotune and CUDA graphs do not apply there).
The tiler gives every window one fixed shape (edge windows move inward: `TileOptions.fixed_window`)
and a short last batch is padded with copies, so an image compiles once per (model, tile, precision,
device) rather than once per edge-tile shape, and no pixel sees padding a plain run would not;
windows of another shape (images shorter than a window) run eagerly. Inductor's on-disk cache
lives under ``weights/converted/compiled/``, one folder per (model, tile, precision, device name,
torch version, mode), so a restart reuses the kernels instead of autotuning again; the first run
on an empty cache compiles for minutes (timings: README, "Performance").

Chosen by the ``backend`` setting (`esrgan.settings.Settings`); nothing on the default path imports
torch.compile machinery. fp8 is left out: torch has no fp8 convolution.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

BACKEND_NAME = "compiled"
CACHE_SUBDIR = Path("converted") / "compiled"
_compile_lock = threading.Lock()  # the inductor cache folder is a process-wide setting


def device_name(device: torch.device) -> str:
    """The hardware kernels are compiled for: the GPU's name, or the CPU's kernel level."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{torch.backends.cpu.get_cpu_capability()}"


def cache_dir(weights_dir: Path, model: str, window: int, batch: int, dtype: torch.dtype,
              device: torch.device, mode: str | None = None) -> Path:
    """Where inductor keeps the kernels of one (model, tile, precision, device, torch version, mode)."""
    key = "|".join([model, f"{window}x{window}x{batch}", str(dtype), device_name(device), torch.__version__,
                    *([mode] if mode else [])])
    readable = f"{Path(model).stem}-{window}-b{batch}-{str(dtype).split('.')[-1]}"
    return weights_dir / CACHE_SUBDIR / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class CompiledModel(torch.nn.Module):
    """Runs a network compiled for one fixed input shape, padding smaller inputs up to it.

    Args:
        module: The eager network, on its device, in its dtype, in eval mode; maps (N, 3, h, w) to
            (N, 3, h*scale, w*scale).
        scale: The network's native scale.
        window: The fixed input side (tile + 2 * tile_pad, rounded to the model's multiple); other
            shapes run through ``module`` eagerly. 0 compiles whole images, once per shape.
        batch: The fixed batch size; smaller batches are padded with copies of the last tile.
        cache: Inductor's cache folder for this configuration.
        mode: torch.compile's mode; None picks ``"max-autotune"`` on CUDA and inductor's default on
            the CPU. ``"reduce-overhead"`` (CUDA graphs, no autotuning) compiles in about a third
            of the time.
    """

    def __init__(self, module: torch.nn.Module, *, scale: int, window: int, batch: int, cache: Path,
                 mode: str | None = None) -> None:
        super().__init__()
        self.module = module
        self.scale = scale
        self.window = window
        self.batch = batch
        self.cache = cache
        cuda = next(module.parameters()).device.type == "cuda"
        mode = mode or ("max-autotune" if cuda else None)
        options = {"mode": mode} if mode else {}
        # A hook-free copy: the eager run's progress hooks (esrgan.tiling.run) call back into Python at
        # every block, which a full-graph compilation cannot trace; compiled runs report per tile.
        self._compiled = torch.compile(_without_hooks(module), dynamic=False, fullgraph=True, **options)
        self._warm: set[tuple[int, ...]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.window and (h, w) != (self.window, self.window):
            # A window of another shape (the image is shorter than a window along a side) runs
            # eagerly: padding it up to the compiled shape would change what its border pixels
            # see, and the result would drift from fp32 far more than eager tiles do (README).
            return self.module(x)
        padded = x
        if n < self.batch:
            padded = torch.cat([padded, padded[-1:].expand(self.batch - n, -1, -1, -1)])
            padded = padded.contiguous(memory_format=torch.channels_last) if _is_cl(x) else padded.contiguous()
        out = self._run(padded)
        return out[:n]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        if shape in self._warm:
            return self._compiled(x)
        with _compile_lock:  # first call of a shape compiles; point inductor at our cache folder
            previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
            self.cache.mkdir(parents=True, exist_ok=True)
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(self.cache)
            try:
                log.info("compiling for %s (cache %s)", shape, self.cache)
                out = self._compiled(x)
            finally:
                if previous is None:
                    os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
                else:
                    os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
            self._warm.add(shape)
            return out


def _is_cl(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def compile_for_tiles(module: torch.nn.Module, *, model: str, scale: int, tile: int, tile_pad: int,
                      size_multiple: int, batch: int, weights_dir: Path, mode: str | None = None) -> CompiledModel:
    """Wrap ``module`` so every tile of ``tile`` (+ context) runs through one compiled shape.

    Args:
        module: The loaded network (device, dtype and layout already set).
        model: Its name, for the cache key.
        scale: Its native scale.
        tile: Tile side in input pixels (0: whole images, compiled per image shape).
        tile_pad: Context pixels on each side of a tile.
        size_multiple: The model's input multiple.
        batch: Tiles per forward pass.
        weights_dir: The weights folder; the cache goes under ``converted/compiled/``.
        mode: torch.compile's mode (see `CompiledModel`).
    """
    window = 0 if tile <= 0 else _round_up(tile, size_multiple) + 2 * _round_up(tile_pad, size_multiple)
    batch = batch if window else 1  # a whole image comes alone: padding its batch would only add work
    parameter = next(module.parameters())
    cache = cache_dir(weights_dir, model, window, batch, parameter.dtype, parameter.device, mode)
    return CompiledModel(module, scale=scale, window=window, batch=batch, cache=cache, mode=mode)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


_wrapped: dict[tuple[int, int, int, int], CompiledModel] = {}
_wrapped_lock = threading.Lock()


def module_for(loaded, tiling, backend: str, weights_dir: Path) -> torch.nn.Module:
    """The module the tiled run should call: ``loaded.module`` itself, or its compiled wrapper
    (made once per model and tiling, then shared) when the compiled backend is requested.

    Args:
        loaded: An `esrgan.models.store.LoadedModel`.
        tiling: The `esrgan.tiling.plan.TileOptions` the run will use.
        backend: The backend setting; only ``"compiled"`` wraps the module.
        weights_dir: The weights folder (the kernel cache goes under it).
    """
    if backend != BACKEND_NAME:
        return loaded.module
    key = (id(loaded.module), tiling.tile, tiling.tile_pad, tiling.batch)
    with _wrapped_lock:
        if key not in _wrapped:
            _wrapped[key] = compile_for_tiles(
                loaded.module, model=loaded.entry.name, scale=loaded.entry.scale, tile=tiling.tile,
                tile_pad=tiling.tile_pad, size_multiple=loaded.size_multiple, batch=tiling.batch,
                weights_dir=weights_dir)
        return _wrapped[key]


def _without_hooks(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` (same weights, same device and dtype) with no forward hooks."""
    clone = copy.deepcopy(module)
    for part in clone.modules():
        part._forward_hooks.clear()
        part._forward_pre_hooks.clear()
    return clone
