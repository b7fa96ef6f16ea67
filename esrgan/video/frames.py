"""Frames between FFmpeg and the networks: colour-exact conversion of decoded pictures to RGB and
back, and the frame function the video engine calls, built from an `Upscaler`.

The engine core knows a frame function only as ``(H, W, 3) RGB -> (H', W', 3) RGB`` of the same
dtype: uint8 for 8-bit clips, uint16 (the full 16-bit range) for deeper ones, so any network (or
a test's stand-in) can drive it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import av
import numpy as np

from esrgan.io.imageio import DecodedImage, as_float, to_uint8
from esrgan.models import registry
from esrgan.pipeline import Upscaler
from esrgan.tiling.steps import CancelFn
from esrgan.video.probe import Colour

FrameFn = Callable[[np.ndarray], np.ndarray]

DEFAULT_VIDEO_MODEL = registry.VIDEO_DEFAULT_MODEL  # the registry's choice, named here for the engine's callers
LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG: what an unspecified range means for YUV video
DEEP_PEAK = 65535.0  # a deeper clip's frames span uint16 whatever their bits (FFmpeg scales to rgb48)


def default_video_model(noise: str | None = "none") -> str | None:
    """The model a clip is upscaled with unless the person picks one: animevideov3, or None (the
    registry's route) when noise reduction is asked for, which only Real-CUGAN offers."""
    return DEFAULT_VIDEO_MODEL if noise in (None, "", "none") else None


def frame_to_rgb(frame: av.VideoFrame, colour: Colour, bits: int = 8) -> np.ndarray:
    """A decoded picture as (H, W, 3) RGB, converted with the clip's own matrix and range: uint8 for
    an 8-bit clip, uint16 for a deeper one (its samples are not rounded to 8 bits)."""
    rgb = frame.reformat(format="rgb48le" if bits > 8 else "rgb24", src_colorspace=colour.matrix,
                         src_color_range=colour.range or LIMITED_RANGE)
    return rgb.to_ndarray()


def rgb_to_frame(rgb: np.ndarray, colour: Colour, pix_fmt: str) -> av.VideoFrame:
    """(H, W, 3) uint8 or uint16 RGB as a picture in ``pix_fmt``, with the clip's matrix, range and
    tags, so that a player converts it back to the same RGB."""
    deep = rgb.dtype == np.uint16
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb48le" if deep else "rgb24")
    out = frame.reformat(format=pix_fmt, dst_colorspace=colour.matrix, dst_color_range=colour.range or LIMITED_RANGE)
    out.colorspace = colour.matrix
    out.color_range = colour.range or LIMITED_RANGE
    out.color_primaries = colour.primaries
    out.color_trc = colour.transfer
    return out


def frame_upscaler(
    upscaler: Upscaler,
    scale: float,
    model: str | None = None,
    noise: str | None = "none",
    anime: bool = True,
    precision: str | None = None,
    cancelled: CancelFn | None = None,
    tta: bool = False,
) -> FrameFn:
    """The frame function for the video engine, through `Upscaler.upscale` (the image path's model
    choice, tiling, resample and limits).

    Args:
        upscaler: The engine front (its model cache is shared with the image path).
        scale: Any output scale from 1 to 8.
        model: A registry name or checkpoint; None: `default_video_model` (realesr-animevideov3, or
            the registry's route for ``anime`` when noise reduction is asked for).
        noise: Noise reduction (``"none"``, ``"low"``, ``"medium"``, ``"high"``).
        anime: The content type the route uses when ``model`` is None.
        precision: Overrides the upscaler's precision (``"fp32"``, ``"bf16"``, ``"fp16"``); the
            model cache stays shared.
        cancelled: Polled inside each frame's forward pass too.
        tta: Average each frame's model over the 8 flips and transposes (`esrgan.tiling.tta`; 8x the time).

    Raises:
        UnsupportedScaleError, NoiseNotAvailableError, ModelNotFoundError: At once, before any frame.
    """
    if precision is not None and precision != upscaler.settings.precision:
        upscaler = Upscaler(upscaler.store, replace(upscaler.settings, precision=precision))
    model = model if model is not None else default_video_model(noise)
    upscaler.plan(scale, anime, model, noise)  # refuse a bad choice before the first frame

    def upscale_frame(rgb: np.ndarray) -> np.ndarray:
        deep = rgb.dtype == np.uint16
        peak = DEEP_PEAK if deep else 255.0
        image = DecodedImage(rgb.astype(np.float32) / peak, bit_depth=16 if deep else 8)
        result = upscaler.upscale(image, scale, anime, model, cancelled=cancelled, noise=noise, tta=tta)
        if not deep:
            return to_uint8(result.image.pixels)
        return np.clip(as_float(result.image.pixels) * peak + 0.5, 0, peak).astype(np.uint16)

    return upscale_frame
