"""How large the tiles of a run are on this device: the tiling a run, its estimate and its progress
total all plan from (`esrgan.pipeline.Upscaler.tile_options`).

On a GPU as large as half its free memory allows (Vulkan: its heap budget); on the CPU 384 px
(`esrgan.tiling.tile_size`), smaller when the RAM left (or a huge output canvas) needs the room; a
model that runs whole gets its own (`esrgan.models.whole`). The user's ``--tile`` always wins.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from esrgan.models.whole import tiling_for
from esrgan.runtime import compiled
from esrgan.runtime.choose import Runtime
from esrgan.runtime.devices import vulkan_tile
from esrgan.settings import Settings
from esrgan.tiling.plan import TileOptions
from esrgan.tiling.tile_size import LARGE_CANVAS_BYTES, cpu_tile, cuda_tile

# The compiled backend runs one fixed shape: 512 px tiles (+ context) in batches of 4 on a GPU, so
# a small image is not padded up to a window sized for the largest.
COMPILED_CUDA_TILE = 512
SMALL_TILE_BATCH = 4  # same-shape tiles per forward pass when tiles are small on a GPU

RuntimeFn = Callable[[bool], "Runtime | None"]  # (measure now if need be) -> the runtime, or None if not known yet


def tile_options(settings: Settings, device: torch.device, runtime: RuntimeFn, output_pixels: int = 0,
                 model: str | None = None) -> TileOptions:
    """The tiling of a run of ``model`` whose result has ``output_pixels``. ``runtime(True)``
    measures the CPU if it must; ``runtime(False)`` does not."""
    tile = settings.tile
    compiling = settings.backend == compiled.BACKEND_NAME
    if tile is None and device.type == "vulkan":
        tile = vulkan_tile(device, settings.tile_pad)
    elif tile is None and device.type == "cuda":
        tile = COMPILED_CUDA_TILE if compiling else cuda_tile(device, runtime(True).precision != "fp32")
    elif tile is None:
        known = runtime(output_pixels * 3 * 4 > LARGE_CANVAS_BYTES)  # no calibration for a small image
        tile = cpu_tile(output_pixels, settings.tile_pad, known is not None and known.precision == "bf16")
    small = device.type == "cuda" and 0 < tile <= 512
    options = TileOptions(tile=tile, tile_pad=settings.tile_pad, pre_pad=settings.pre_pad,
                          batch=SMALL_TILE_BATCH if small else 1, fixed_window=compiling, se_sync=settings.se_sync)
    return tiling_for(options, model, output_pixels)
