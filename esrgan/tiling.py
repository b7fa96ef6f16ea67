"""Stateless tiled inference: memory bounded by the tile, seams hidden by blended overlaps.

The image is reflect-padded (so the model sees context at the border, as the official ``pre_pad``
does) and padded to the multiple the model needs. Each tile is run with ``tile_pad`` pixels of
context; neighbouring outputs overlap by ``2 * blend`` pixels (input scale) and are mixed with
complementary linear ramps, so the weights of every output pixel sum to exactly one. The output
canvas lives on the host; only one tile at a time is on the device.
"""

from __future__ import annotations

import ctypes
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from esrgan.errors import Cancelled

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class TileOptions:
    """How to cut the image.

    Attributes:
        tile: Tile side in input pixels; 0 runs the whole image at once.
        tile_pad: Context pixels around each tile, cropped away (or blended) afterwards.
        pre_pad: Reflect padding around the whole image, cropped away afterwards.
        batch: Tiles of the same shape run together, up to this many (worth it on a GPU).
    """

    tile: int = 256
    tile_pad: int = 24
    pre_pad: int = 8
    batch: int = 1


@dataclass(frozen=True)
class Tile:
    """One tile: its core (what it owns) and its window (what the model sees), in input pixels."""

    core: tuple[int, int, int, int]  # y0, y1, x0, x1
    window: tuple[int, int, int, int]


def _cuts(length: int, tile: int, multiple: int) -> list[int]:
    """Boundaries that split ``length`` into near-equal cores of at most ``tile``, on ``multiple``."""
    count = math.ceil(length / tile)
    cuts = [_round_up(round(i * length / count), multiple) for i in range(count)]
    return sorted(set(min(c, length) for c in cuts)) + [length]


def plan_tiles(height: int, width: int, tile: int, tile_pad: int, multiple: int = 1) -> list[Tile]:
    """Cut (height, width) into near-equal tiles of side at most ``tile``, ``tile_pad`` context each.

    Equal cores (rather than full tiles and a thin remainder) keep every core at least half a tile
    wide, so the blending bands of its two sides never meet.
    """
    if tile <= 0 or (height <= tile and width <= tile):
        return [Tile((0, height, 0, width), (0, height, 0, width))]
    ys, xs = _cuts(height, tile, multiple), _cuts(width, tile, multiple)
    tiles = []
    for y0, y1 in zip(ys, ys[1:], strict=False):
        for x0, x1 in zip(xs, xs[1:], strict=False):
            window = (max(y0 - tile_pad, 0), min(y1 + tile_pad, height),
                      max(x0 - tile_pad, 0), min(x1 + tile_pad, width))
            tiles.append(Tile((y0, y1, x0, x1), window))
    return tiles


def _ramp(start: int, stop: int, lo: int, hi: int, blend: int, scale: int) -> tuple[int, int, np.ndarray]:
    """Output span and weights along one axis for a core [start, stop) within [lo, hi)."""
    a = start - blend if start > lo else start
    b = stop + blend if stop < hi else stop
    n = (b - a) * scale
    weights = np.ones(n, dtype=np.float32)
    band = 2 * blend * scale
    if band and start > lo:
        weights[:band] = (np.arange(band, dtype=np.float32) + 0.5) / band
    if band and stop < hi:
        weights[n - band :] = (np.arange(band, 0, -1, dtype=np.float32) - 0.5) / band
    return a, b, weights


def _pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    if not (top or bottom or left or right):
        return x
    height, width = x.shape[-2:]
    mode = "reflect" if max(top, bottom) < height and max(left, right) < width else "replicate"
    return F.pad(x, (left, right, top, bottom), mode=mode)


@torch.inference_mode()
def upscale_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    scale: int,
    size_multiple: int = 1,
    options: TileOptions = TileOptions(),
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    progress: ProgressFn | None = None,
    cancelled: CancelFn | None = None,
) -> np.ndarray:
    """Run ``model`` over ``image`` tile by tile.

    Args:
        model: Maps (1, 3, h, w) float RGB in [0, 1] to (1, 3, h*scale, w*scale); already on
            ``device`` in ``dtype`` and in eval mode. It is only called, never changed.
        image: (H, W, 3) float32 RGB in [0, 1].
        scale: The model's native scale.
        size_multiple: The model needs input sides that are multiples of this.
        options: Tile size and paddings.
        device: Where the model runs.
        dtype: The model's dtype (float16 on CUDA, bfloat16 on CPUs with native support).
        channels_last: Feed the model NHWC tensors (when it was converted to channels-last).
        progress: Called as ``progress(done, total)`` after each tile.
        cancelled: Polled between tiles; when it returns True, `Cancelled` is raised.

    Returns:
        (H*scale, W*scale, 3) float32 RGB in [0, 1].
    """
    height, width = image.shape[:2]
    m = size_multiple
    tile = _round_up(options.tile, m) if options.tile > 0 else 0
    tile_pad = _round_up(options.tile_pad, m)
    pre = options.pre_pad
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    x = _pad(x, pre, pre, pre, pre)
    extra_h, extra_w = -x.shape[2] % m, -x.shape[3] % m
    x = _pad(x, 0, extra_h, 0, extra_w)
    padded_h, padded_w = x.shape[2:]

    tiles = plan_tiles(padded_h, padded_w, tile, tile_pad, m)
    blend = min(tile_pad // 2, tile // 4) if len(tiles) > 1 else 0
    # The output lives on the host in (H, W, C) order, so the result needs no transposed copy, and
    # only the image's own area is kept (what falls on the padding is never stored).
    s = scale
    canvas = np.zeros((height * s, width * s, 3), dtype=np.float32)
    done = 0
    for group in _batches(tiles, options.batch):
        if cancelled is not None and cancelled():
            raise Cancelled("stopped on request")
        patches = torch.cat([x[:, :, t.window[0] : t.window[1], t.window[2] : t.window[3]] for t in group])
        patches = patches.to(device=device, dtype=dtype, non_blocking=True)
        if channels_last:
            patches = patches.contiguous(memory_format=torch.channels_last)
        outputs = model(patches).float().clamp_(0, 1).cpu().numpy()
        for t, out in zip(group, outputs, strict=True):
            wy0, wx0 = t.window[0], t.window[2]
            ya, yb, wy = _ramp(t.core[0], t.core[1], 0, padded_h, blend, scale)
            xa, xb, wx = _ramp(t.core[2], t.core[3], 0, padded_w, blend, scale)
            region = out[:, (ya - wy0) * scale : (yb - wy0) * scale, (xa - wx0) * scale : (xb - wx0) * scale]
            region = region.transpose(1, 2, 0)
            if blend:
                region = region * wy[:, None, None] * wx[None, :, None]
            top, left = (ya - pre) * s, (xa - pre) * s  # where the region starts on the canvas
            y0, y1 = max(top, 0), min(top + region.shape[0], height * s)
            x0, x1 = max(left, 0), min(left + region.shape[1], width * s)
            if y0 < y1 and x0 < x1:
                canvas[y0:y1, x0:x1] += region[y0 - top : y1 - top, x0 - left : x1 - left]
            done += 1
            if progress is not None:
                progress(done, len(tiles))
        if torch.device(device).type == "cpu":
            _return_freed_memory()
    return canvas


def _return_freed_memory() -> None:
    """Give the previous tile's freed activations back to the OS (glibc keeps them otherwise, and
    fragmentation then grows the process by hundreds of MB over a large image). Costs nothing
    measurable per tile; a no-op where the C library is not glibc."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def _batches(tiles: list[Tile], size: int) -> list[list[Tile]]:
    """Consecutive tiles whose windows have the same shape, at most ``size`` at a time."""
    groups: list[list[Tile]] = []
    for t in tiles:
        shape = (t.window[1] - t.window[0], t.window[3] - t.window[2])
        last = groups[-1] if groups else None
        if last and len(last) < size and (last[0].window[1] - last[0].window[0],
                                          last[0].window[3] - last[0].window[2]) == shape:
            last.append(t)
        else:
            groups.append([t])
    return groups


def count_tiles(height: int, width: int, options: TileOptions, size_multiple: int = 1) -> int:
    """How many tiles `upscale_tiled` will run for an image of this size (for estimates)."""
    m = size_multiple
    padded_h = _round_up(height + 2 * options.pre_pad, m)
    padded_w = _round_up(width + 2 * options.pre_pad, m)
    tile = _round_up(options.tile, m) if options.tile > 0 else 0
    return len(plan_tiles(padded_h, padded_w, tile, _round_up(options.tile_pad, m), m))


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
