"""Stateless tiled inference: memory bounded by the tile, seams hidden by blended overlaps, and
progress and cancel below the tile.

By default the image is not padded (``pre_pad=0``, the official Real-ESRGAN semantics); a
``pre_pad`` reflect-pads it first. It is padded to the multiple the model needs. Each tile is run
with ``tile_pad`` pixels of context; neighbouring outputs overlap by ``2 * blend`` pixels (input
scale) and are mixed with complementary linear ramps, so the weights of every output pixel sum to
exactly one. A tile's budget is an area (``tile`` squared): a thin strip runs as one long tile
instead of many short ones that would each pay their context. The output canvas lives on the host;
only one tile (or one batch of same-shape tiles) at a time is on the device.

Progress counts *steps*: a step after each block of the network's body (each RRDB of an RRDBNet,
each convolution of an SRVGGNetCompact) and one when a tile is stored, so even a one-tile job
reports often; ``cancelled()`` is polled at every step and raises `Cancelled` from inside the
forward pass. The steps come from forward hooks registered once per network; they dispatch to the
run of the calling thread only, so a network shared between threads is never disturbed and its
key names never change.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
import weakref
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
        pre_pad: Reflect padding around the whole image, cropped away afterwards; 0 (the default)
            is the official inference.
        batch: Tiles of the same shape run together, up to this many (worth it on a GPU).
        blend: Half-width of the blended overlap between neighbours; None is ``tile_pad // 4``
            (narrow bands keep more context under them: 54.7 dB to the whole-image x4plus output
            on a real photo with 96 px tiles, against 53.7 dB for ``tile_pad // 2``).
        fixed_window: Every window exactly ``tile + 2 * tile_pad`` along each axis the image is
            that long (edge windows are moved inward, so their tiles get more context, never
            padding), for a network compiled for one shape (`esrgan.compiled`).
    """

    tile: int = 256
    tile_pad: int = 32
    pre_pad: int = 0
    batch: int = 1
    blend: int | None = None
    fixed_window: bool = False


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


def _core_limits(height: int, width: int, tile: int, multiple: int) -> tuple[int, int]:
    """The longest core along each axis. A tile's budget is an area, tile x tile: where one side
    fits in a single tile, the other may run as long as that area allows (a thin strip is one long
    tile, not many short ones that each pay ``2 * tile_pad`` of context)."""
    if height <= tile and width > tile:
        return height, max(tile, tile * tile // max(height, 1) // multiple * multiple)
    if width <= tile and height > tile:
        return max(tile, tile * tile // max(width, 1) // multiple * multiple), width
    return tile, tile


def plan_tiles(height: int, width: int, tile: int, tile_pad: int, multiple: int = 1,
               fixed: bool = False) -> list[Tile]:
    """Cut (height, width) into near-equal tiles of about ``tile`` squared pixels, ``tile_pad`` context each.

    Equal cores (rather than full tiles and a thin remainder) keep every core at least half a tile
    wide, so the blending bands of its two sides never meet. With ``fixed``, windows are
    ``tile + 2 * tile_pad`` long wherever the image is (see `TileOptions.fixed_window`).
    """
    if tile <= 0 or (height <= tile and width <= tile):
        return [Tile((0, height, 0, width), (0, height, 0, width))]
    limit_h, limit_w = (tile, tile) if fixed else _core_limits(height, width, tile, multiple)
    ys, xs = _cuts(height, limit_h, multiple), _cuts(width, limit_w, multiple)
    side = tile + 2 * tile_pad

    def span(start: int, stop: int, length: int) -> tuple[int, int]:
        if fixed and length >= side:  # the core stays inside: it is at most ``tile`` long
            first = min(max(start - tile_pad, 0), length - side)
            return first, first + side
        return max(start - tile_pad, 0), min(stop + tile_pad, length)

    tiles = []
    for y0, y1 in zip(ys, ys[1:], strict=False):
        for x0, x1 in zip(xs, xs[1:], strict=False):
            tiles.append(Tile((y0, y1, x0, x1), (*span(y0, y1, height), *span(x0, x1, width))))
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


class _Steps:
    """Progress of one run in steps; polls ``cancelled`` at every step."""

    def __init__(self, total: int, progress: ProgressFn | None, cancelled: CancelFn | None) -> None:
        self.total, self.progress, self.cancelled = total, progress, cancelled
        self.done = 0
        self.width = 1  # tiles in the forward pass now running: each block step advances them all
        self.ceiling = 0  # block steps never pass this: the tile's last step is its storing

    def check(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Cancelled("stopped on request")

    def step(self, to: int | None = None) -> None:
        self.check()
        self.done = to if to is not None else min(self.done + self.width, self.ceiling)
        if self.progress is not None:
            self.progress(self.done, self.total)


_CURRENT = threading.local()  # the _Steps of the run on this thread, if any
_BLOCK_COUNTS: weakref.WeakKeyDictionary[torch.nn.Module, int] = weakref.WeakKeyDictionary()
_HOOK_LOCK = threading.Lock()


def step_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks after each of which a step is counted: the children of a ``body`` (Sequential or
    ModuleList) that hold convolutions (the RRDBs of an RRDBNet, the convolutions of an
    SRVGGNetCompact); none for a network without such a body (it then reports one step per tile)."""
    body = getattr(model, "body", None)
    if not isinstance(body, (torch.nn.Sequential, torch.nn.ModuleList)):
        return []
    return [block for block in body if any(isinstance(m, torch.nn.Conv2d) for m in block.modules())]


def _after_block(_module: torch.nn.Module, _inputs: object, _output: object) -> None:
    steps = getattr(_CURRENT, "steps", None)
    if steps is not None:
        steps.step()


def steps_per_tile(model: torch.nn.Module) -> int:
    """Progress steps one tile reports (its blocks, and its storing). Registers the block hooks on
    first use; they do nothing for forward passes outside `upscale_tiled`."""
    with _HOOK_LOCK:
        if model not in _BLOCK_COUNTS:
            blocks = step_blocks(model)
            for block in blocks:
                block.register_forward_hook(_after_block)
            _BLOCK_COUNTS[model] = len(blocks)
        return _BLOCK_COUNTS[model] + 1


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
            ``device`` in ``dtype`` and in eval mode. It is only called, never changed (block hooks
            for progress are added once; see `steps_per_tile`).
        image: (H, W, 3) float32 RGB in [0, 1].
        scale: The model's native scale.
        size_multiple: The model needs input sides that are multiples of this.
        options: Tile size and paddings.
        device: Where the model runs.
        dtype: The model's dtype (float16 on CUDA, bfloat16 on CPUs with native support).
        channels_last: Feed the model NHWC tensors (when it was converted to channels-last).
        progress: Called as ``progress(done, total)`` in steps: several per tile (see the module
            docstring), monotonic, the last call with ``done == total``.
        cancelled: Polled at every step, inside the forward pass too; when it returns True,
            `Cancelled` is raised.

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
    # A network that pads itself (waifu2x: a ``forward_valid`` and its own replicated border) takes
    # any size; padding the image to its multiple here would put our reflected border where it
    # replicates. Its tiles still start on the multiple (issue 21; esrgan.tileplan's "consumes
    # context" on the h6-exact branch is the full form of this: the lead keeps one).
    if not hasattr(model, "forward_valid"):
        x = _pad(x, 0, -x.shape[2] % m, 0, -x.shape[3] % m)
    padded_h, padded_w = x.shape[2:]

    tiles = plan_tiles(padded_h, padded_w, tile, tile_pad, m, options.fixed_window)
    wanted = tile_pad // 4 if options.blend is None else options.blend
    blend = min(wanted, tile_pad, tile // 4) if len(tiles) > 1 else 0
    per_tile = steps_per_tile(model)
    steps = _Steps(len(tiles) * per_tile, progress, cancelled)
    # The output lives in (H, W, C) order, so the result needs no transposed copy, and only the
    # image's own area is kept (what falls on the padding is never stored). On a GPU with room for
    # it the canvas stays there: the tiles never cross to the host one by one.
    s = scale
    canvas = _canvas(height * s, width * s, device)
    stored = 0
    previous = getattr(_CURRENT, "steps", None)
    _CURRENT.steps = steps
    try:
        for group in _batches(tiles, options.batch):
            steps.check()
            patches = torch.cat([x[:, :, t.window[0] : t.window[1], t.window[2] : t.window[3]] for t in group])
            patches = patches.to(device=device, dtype=dtype, non_blocking=True)
            if channels_last:
                patches = patches.contiguous(memory_format=torch.channels_last)
            steps.width, steps.ceiling = len(group), (stored + len(group)) * per_tile - len(group)
            outputs = model(patches).float().clamp_(0, 1)
            if isinstance(canvas, np.ndarray):
                outputs = outputs.cpu().numpy()
            for t, out in zip(group, outputs, strict=True):
                _store(canvas, out, t, blend, scale, pre, padded_h, padded_w)
            stored += len(group)
            steps.step(to=stored * per_tile)
            if torch.device(device).type == "cpu":
                _return_freed_memory()
    finally:
        _CURRENT.steps = previous
    return canvas if isinstance(canvas, np.ndarray) else canvas.cpu().numpy()


def _canvas(height: int, width: int, device: torch.device | str) -> np.ndarray | torch.Tensor:
    """The (H, W, 3) float32 output canvas: on the GPU when it takes at most a quarter of the free
    GPU memory (tiles are stored there, and the result crosses to the host once), else on the host."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if height * width * 3 * 4 <= free // 4:
            return torch.zeros((height, width, 3), dtype=torch.float32, device=device)
    return np.zeros((height, width, 3), dtype=np.float32)


def _store(canvas: np.ndarray | torch.Tensor, out: np.ndarray | torch.Tensor, t: Tile, blend: int, scale: int,
           pre: int, padded_h: int, padded_w: int) -> None:
    """Add one tile's (3, h, w) output, weighted by its blending ramps, to the (H, W, 3) canvas
    (both numpy arrays on the host, or both tensors on one device)."""
    s = scale
    height, width = canvas.shape[0] // s, canvas.shape[1] // s
    wy0, wx0 = t.window[0], t.window[2]
    ya, yb, wy = _ramp(t.core[0], t.core[1], 0, padded_h, blend, scale)
    xa, xb, wx = _ramp(t.core[2], t.core[3], 0, padded_w, blend, scale)
    region = out[:, (ya - wy0) * s : (yb - wy0) * s, (xa - wx0) * s : (xb - wx0) * s]
    region = region.permute(1, 2, 0) if isinstance(region, torch.Tensor) else region.transpose(1, 2, 0)
    if blend:
        if isinstance(region, torch.Tensor):
            wy, wx = torch.from_numpy(wy).to(region.device), torch.from_numpy(wx).to(region.device)
        region = region * wy[:, None, None] * wx[None, :, None]
    top, left = (ya - pre) * s, (xa - pre) * s  # where the region starts on the canvas
    y0, y1 = max(top, 0), min(top + region.shape[0], height * s)
    x0, x1 = max(left, 0), min(left + region.shape[1], width * s)
    if y0 < y1 and x0 < x1:
        canvas[y0:y1, x0:x1] += region[y0 - top : y1 - top, x0 - left : x1 - left]


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


def _plan_for(height: int, width: int, options: TileOptions, size_multiple: int) -> list[Tile]:
    m = size_multiple
    padded_h = _round_up(height + 2 * options.pre_pad, m)
    padded_w = _round_up(width + 2 * options.pre_pad, m)
    tile = _round_up(options.tile, m) if options.tile > 0 else 0
    return plan_tiles(padded_h, padded_w, tile, _round_up(options.tile_pad, m), m, options.fixed_window)


def count_tiles(height: int, width: int, options: TileOptions, size_multiple: int = 1) -> int:
    """How many tiles `upscale_tiled` will run for an image of this size (for estimates)."""
    return len(_plan_for(height, width, options, size_multiple))


def work_pixels(height: int, width: int, options: TileOptions, size_multiple: int = 1) -> int:
    """Input pixels `upscale_tiled` will really run through the model: every tile's window, with
    its context, over the padded image. The honest basis of time and memory estimates."""
    return sum((t.window[1] - t.window[0]) * (t.window[3] - t.window[2])
               for t in _plan_for(height, width, options, size_multiple))


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
