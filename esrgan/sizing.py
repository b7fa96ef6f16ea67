"""Output by size: the scale that makes a result of a given width or height, aspect kept.

The asked side comes out exactly; the other side follows the scale and is truncated, as every scale
is (`esrgan.models.registry.output_size`, the official ``--outscale`` rule): 640x427 asked 1000 wide is
1000x667 (427 x 1000/640 = 667.2).
"""

from __future__ import annotations

import math

from esrgan.errors import ImageTooLargeError, UnsupportedScaleError
from esrgan.models.registry import MAX_SCALE, MIN_SCALE, output_size


def scale_for_size(width: int, height: int, target_width: int | None = None,
                   target_height: int | None = None) -> float:
    """The scale that turns a ``width`` x ``height`` image into one ``target_width`` wide (or
    ``target_height`` high: exactly one of the two).

    Raises:
        UnsupportedScaleError: Both or neither target given, or a target that is not a whole
            positive number, or one outside 1x..8x (the message names the sizes that work).
    """
    if (target_width is None) == (target_height is None):
        raise UnsupportedScaleError("give either a width or a height for the result, not both (aspect is kept)")
    side, target, name = (width, target_width, "width") if target_width is not None else (height, target_height, "height")
    if not isinstance(target, int) or isinstance(target, bool) or target < 1:
        raise UnsupportedScaleError(f"the result's {name} must be a whole number of pixels, not {target!r}")
    smallest, largest = math.ceil(side * MIN_SCALE), math.floor(side * MAX_SCALE)
    if not smallest <= target <= largest:
        raise UnsupportedScaleError(
            f"a {name} of {target} px is {target / side:.3g}x this {width}x{height} image; the result can be "
            f"{MIN_SCALE:g}x to {MAX_SCALE:g}x: a {name} from {smallest} to {largest} px")
    scale = target / side
    made = output_size(width, height, scale)[0 if name == "width" else 1]
    if made != target:  # float rounding; never seen, but the asked side must come out exactly
        raise UnsupportedScaleError(f"cannot make a {name} of exactly {target} px from {side} px")
    return int(scale) if scale.is_integer() else scale


def check_output_size(width: int, height: int, scale: float, limit: int) -> None:
    """Raise ImageTooLargeError when a ``scale``x result of a ``width`` x ``height`` image would have
    more than ``limit`` pixels; the message says the largest scale that fits."""
    out_w, out_h = output_size(width, height, scale)
    pixels = out_w * out_h
    if pixels > limit:
        largest = math.floor((limit / (width * height)) ** 0.5 * 100) / 100  # the largest that fits
        fix = (f"choose a scale of at most {largest:g}x" if largest >= MIN_SCALE
               else "crop or shrink the image first: even 1x is over the limit")
        raise ImageTooLargeError(
            f"a {scale:g}x result of this {width}x{height} image would be {out_w}x{out_h} "
            f"({pixels / 1e6:.1f} MP); the limit is {limit / 1e6:.1f} MP: {fix}."
        )
