"""Where the tiles of one upscale go: planned once, then read by the estimate (`TilePlan.work_pixels`),
the progress total (`TilePlan.count`) and the tiled run (`esrgan.tiling.run.run_plan`).

Two ways to cut, chosen by the network:

* Blended (RRDBNet, SRVGGNetCompact: "same"-padded convolutions). The image is reflect-padded once by
  ``pre_pad`` (0 by default, the official Real-ESRGAN semantics) and, in the same reflect, up to the
  multiple the model needs on the bottom and right. Each tile is run with ``tile_pad`` pixels of
  context; neighbouring outputs overlap by ``2 * blend`` pixels (input scale) and are mixed with
  complementary linear ramps, so the weights of every output pixel sum to exactly one.
* Consuming its context (Real-CUGAN: "valid" convolutions, a network with a ``prepadding`` and a
  ``forward_valid``). The image is padded once as upstream pads it; each window is its core plus
  exactly ``prepadding`` of context, and the network returns exactly the core's output: tiles abut,
  nothing is blended, and every tile equals the same part of the whole image's run (but for the
  squeeze-excitation means: `esrgan.tiling.se_sync`).

A tile's budget is an area (``tile`` squared): a thin strip runs as one long tile instead of many short
ones that would each pay their context.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch


@dataclass(frozen=True)
class TileOptions:
    """How to cut the image.

    Attributes:
        tile: Tile side in input pixels; 0 runs the whole image at once.
        tile_pad: Context pixels around each tile, cropped away (or blended) afterwards (blended
            networks only: one that consumes its context takes exactly what it needs).
        pre_pad: Reflect padding around the whole image, cropped away afterwards; 0 (the default)
            is the official inference (blended networks only).
        batch: Tiles of the same shape run together, up to this many (worth it on a GPU).
        blend: Half-width of the blended overlap between neighbours; None is ``tile_pad // 4``
            (narrow bands keep more context under them: 54.7 dB to the whole-image x4plus output
            on a real photo with 96 px tiles, against 53.7 dB for ``tile_pad // 2``).
        fixed_window: Every window exactly ``tile + 2 * tile_pad`` along each axis the image is
            that long (edge windows are moved inward, so their tiles get more context, never
            padding), for a network compiled for one shape (`esrgan.runtime.compiled`).
        se_sync: For networks with squeeze-excitation blocks (Real-CUGAN): ``"exact"`` computes
            each block's channel means over the whole image, one pass over the tiles per block
            (tiles equal the whole image); ``"tile"`` lets every tile use its own means (one pass,
            faster, tile edges may show). See `esrgan.tiling.se_sync`.
    """

    tile: int = 256
    tile_pad: int = 32
    pre_pad: int = 0
    batch: int = 1
    blend: int | None = None
    fixed_window: bool = False
    se_sync: Literal["exact", "tile"] = "exact"


@dataclass(frozen=True)
class Tile:
    """One tile: its core (what it owns) and its window (what the model sees), in pixels of the
    padded image: (y0, y1, x0, x1)."""

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def key(self) -> str:
        """A name for the tile, the same in every plan that has it (for checkpoints)."""
        return "tile-{}-{}-{}-{}".format(*self.core)

    @property
    def shape(self) -> tuple[int, int]:
        return self.window[1] - self.window[0], self.window[3] - self.window[2]


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one run over one image, and how its output is put together.

    Attributes:
        height, width: The image.
        top, left, bottom, right: The reflect padding applied once to the whole image.
        tile: The tile side the plan was cut with (0: one tile).
        tile_pad: Context per side (the network's own ``prepadding`` when it consumes it).
        multiple: Cores start on multiples of this (in the padded image for blended networks, in the
            image for those consuming their context).
        blend: Half-width of the blended overlaps (0 when the network consumes its context).
        consumes_context: The network returns the core's output only (see the module docstring).
        fixed_window: Windows have one shape (see `TileOptions.fixed_window`).
        tiles: In run order.
    """

    height: int
    width: int
    top: int
    left: int
    bottom: int
    right: int
    tile: int
    tile_pad: int
    multiple: int
    blend: int
    consumes_context: bool
    fixed_window: bool
    tiles: tuple[Tile, ...]

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.top + self.height + self.bottom, self.left + self.width + self.right

    @property
    def count(self) -> int:
        return len(self.tiles)

    @property
    def work_pixels(self) -> int:
        """Input pixels the run really puts through the model: every window, with its context. The
        honest basis of time and memory estimates."""
        return sum(h * w for h, w in (t.shape for t in self.tiles))

    def output_origin(self, t: Tile) -> tuple[int, int]:
        """Where, in the padded image, the first pixel of the model's output for ``t`` lies."""
        return (t.core[0], t.core[2]) if self.consumes_context else (t.window[0], t.window[2])

    def split(self, tiles: list[Tile], tile: int) -> TilePlan:
        """This plan with ``tiles`` (some of its own) each cut into tiles of about ``tile`` px, the
        others kept as they are: what an out-of-memory error re-plans. Blending bands and tile
        boundaries that are kept stay where they were, so finished tiles stay valid.

        Raises:
            ValueError: ``tile`` is too small to cut into (narrower than two blending bands).
        """
        tile = _round_up(tile, self.multiple)
        if self.fixed_window or tile < max(2 * self.blend, self.multiple, 1):
            raise ValueError(f"tiles of {tile} px cannot be cut smaller")
        wanted = set(tiles)
        out: list[Tile] = []
        for t in self.tiles:
            if t not in wanted:
                out.append(t)
                continue
            y0, y1, x0, x1 = t.core
            for a, b in _pairs([y0 + c for c in _cuts(y1 - y0, tile, self.multiple)]):
                for c, d in _pairs([x0 + c for c in _cuts(x1 - x0, tile, self.multiple)]):
                    out.append(self._tile((a, b, c, d)))
        if any(min(b - a, d - c) < 2 * self.blend for a, b, c, d in (t.core for t in out)):
            raise ValueError(f"tiles of {tile} px would be narrower than their blending bands")
        return replace(self, tile=tile, tiles=tuple(out))

    def _tile(self, core: tuple[int, int, int, int]) -> Tile:
        y0, y1, x0, x1 = core
        padded_h, padded_w = self.padded_size
        p = self.tile_pad
        if self.consumes_context:
            return Tile(core, (y0 - p, y1 + p, x0 - p, x1 + p))
        return Tile(core, (max(y0 - p, 0), min(y1 + p, padded_h), max(x0 - p, 0), min(x1 + p, padded_w)))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TilePlan:
        tiles = tuple(Tile(tuple(t["core"]), tuple(t["window"])) for t in data["tiles"])
        return cls(**{**data, "tiles": tiles})


def plan_for(height: int, width: int, options: TileOptions, size_multiple: int = 1,
             context: int = 0) -> TilePlan:
    """The plan for an image of (height, width).

    Args:
        height, width: The image.
        options: Tile size and paddings.
        size_multiple: The model needs input sides (and tile offsets) that are multiples of this.
        context: The network's ``prepadding`` when it consumes its context (`model_context`), else 0.
    """
    m = size_multiple
    tile = _round_up(options.tile, m) if options.tile > 0 else 0
    if context:
        bottom, right = context + (-height % m), context + (-width % m)
        cores = plan_tiles(height + bottom - context, width + right - context, tile, 0, m)
        plan = TilePlan(height, width, context, context, bottom, right, tile, context, m, 0, True, False, ())
        shifted = [tuple(v + context for v in t.core) for t in cores]
        return replace(plan, tiles=tuple(plan._tile(core) for core in shifted))
    pre = options.pre_pad
    bottom, right = pre + (-(height + 2 * pre) % m), pre + (-(width + 2 * pre) % m)
    tile_pad = _round_up(options.tile_pad, m)
    tiles = plan_tiles(height + pre + bottom, width + pre + right, tile, tile_pad, m, options.fixed_window)
    wanted = tile_pad // 4 if options.blend is None else options.blend
    blend = min(wanted, tile_pad, tile // 4) if len(tiles) > 1 else 0
    return TilePlan(height, width, pre, pre, bottom, right, tile, tile_pad, m, blend, False,
                    options.fixed_window, tuple(tiles))


def model_context(model: torch.nn.Module) -> int:
    """The context a network consumes itself (its ``prepadding``, with a ``forward_valid``), or 0."""
    if hasattr(model, "forward_valid"):
        return int(getattr(model, "prepadding", 0))
    return 0


def _cuts(length: int, tile: int, multiple: int) -> list[int]:
    """Boundaries that split ``length`` into near-equal cores of at most ``tile``, on ``multiple``."""
    count = math.ceil(length / tile)
    cuts = [_round_up(round(i * length / count), multiple) for i in range(count)]
    return sorted(set(min(c, length) for c in cuts)) + [length]


def _pairs(cuts: list[int]) -> list[tuple[int, int]]:
    return list(zip(cuts, cuts[1:], strict=False))


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

    return [Tile((y0, y1, x0, x1), (*span(y0, y1, height), *span(x0, x1, width)))
            for y0, y1 in _pairs(ys) for x0, x1 in _pairs(xs)]


def count_tiles(height: int, width: int, options: TileOptions, size_multiple: int = 1, context: int = 0) -> int:
    """How many tiles a run will cut an image of this size into (a read of `plan_for`)."""
    return plan_for(height, width, options, size_multiple, context).count


def work_pixels(height: int, width: int, options: TileOptions, size_multiple: int = 1, context: int = 0) -> int:
    """Input pixels a run will put through the model (a read of `plan_for`)."""
    return plan_for(height, width, options, size_multiple, context).work_pixels


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
