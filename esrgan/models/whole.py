"""Networks that run on the whole image at once (`ModelSpec.whole_up_to`): DAT's attention and
pooling read every pixel, so a tile never equals the whole run. Up to the measured size the image runs
whole, without padding; above it in tiles with the spec's context, which the provenance calls approximate."""

from __future__ import annotations

import math
from dataclasses import replace

from esrgan.errors import ModelNotFoundError
from esrgan.models.specs import ModelSpec, spec
from esrgan.tiling.plan import TileOptions

WINDOW_GRID = 32  # DAT's attention windows: tiles and their context on this grid


def whole_spec(model: str | None) -> ModelSpec | None:
    """The spec of ``model`` when it is one that runs whole, else None (unknown and custom models too)."""
    try:
        found = spec(model) if model else None
    except ModelNotFoundError:
        return None
    return found if found is not None and found.whole_up_to else None


def tiling_for(options: TileOptions, model: str | None, output_pixels: int) -> TileOptions:
    """``options`` as ``model`` needs them for a result of ``output_pixels``: unchanged for a model
    that tiles; the whole image (``tile=0``) up to its `ModelSpec.whole_up_to`; above, windows of at
    most that area, with its `ModelSpec.tile_context` of context, on the `WINDOW_GRID`."""
    found = whole_spec(model)
    if found is None:
        return options
    if output_pixels // found.scale**2 <= found.whole_up_to:
        return replace(options, tile=0, pre_pad=0)
    side = math.isqrt(found.whole_up_to) - 2 * found.tile_context
    return replace(options, tile=side // WINDOW_GRID * WINDOW_GRID, tile_pad=found.tile_context, pre_pad=0)


def approximation(model: str, tiles: int) -> str:
    """What the provenance says of a whole-image model's run: empty when it ran whole."""
    found = whole_spec(model)
    if found is None or tiles <= 1:
        return ""
    return (f"tiled approximately ({tiles} tiles, {found.tile_context} px of context): the network reads "
            "the whole image, about 53 dB to a whole run measured at 48 px of context")
