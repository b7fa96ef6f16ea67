"""Try before you wait: several models on one crop of an image, each timed, with its estimate for
the whole image, so a person picks the model before the long run.

A crop runs as a tile does: the crop plus context on every side (the window), put through the tiler
(`esrgan.tiling.run.upscale_tiled`) whole, the crop's part of the output kept. The window starts on
`ALIGN` (the strides of Real-CUGAN's and waifu2x CUnet's U-nets and DAT's 32 px attention windows),
so the network sees the pixels at the phase a full run gives them. Statistics over the whole input
(Real-CUGAN's and CUnet's squeeze-excitation means, DAT's channel attention and pooling) are taken
from the window, not the whole image: with `CONTEXT` px around the crop they stay close to the full
run's (the figures per model are in the compare tests and the README).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from esrgan.errors import InvalidOptionError
from esrgan.models import registry
from esrgan.pipeline import Upscaler
from esrgan.result import resample
from esrgan.runtime.rates import rate_key
from esrgan.sizing import check_output_size
from esrgan.tiling.run import upscale_tiled
from esrgan.tiling.steps import CancelFn

CONTEXT = 64  # px of input around the crop: a DAT tile's context, twice a blended tile's
ALIGN = 32  # window origins on this grid (see the module docstring)
DEFAULT_CROP = (64, 48)  # the proposed crop's size in input pixels, at most the image's
MAX_CROP_PIXELS = 256 * 256  # a comparison is a preview: larger crops are refused
Crop = tuple[int, int, int, int]  # x, y, width, height in input pixels


@dataclass(frozen=True)
class Candidate:
    """One model's result on the crop.

    Attributes:
        model, title: The model's registry (or custom) name and its human name.
        pixels: (h * scale, w * scale, 3) float32 RGB in [0, 1]: the crop at the asked scale.
        crop_seconds: Time to run the crop's window.
        full_seconds: The engine's estimate for the whole image (`Upscaler.estimate_seconds`).
        note: One line on what it is good for.
    """

    model: str
    title: str
    pixels: np.ndarray
    crop_seconds: float
    full_seconds: float
    note: str = ""


def check_crop(crop: Crop, width: int, height: int) -> Crop:
    """The crop, if it lies inside a ``width`` x ``height`` image and is small enough. Raises InvalidOptionError."""
    x, y, w, h = crop
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise InvalidOptionError(f"the crop {w}x{h} at ({x}, {y}) is not inside the {width}x{height} image")
    if w * h > MAX_CROP_PIXELS:
        raise InvalidOptionError(f"the crop {w}x{h} is too large to compare: at most {MAX_CROP_PIXELS} pixels "
                                 f"(e.g. {int(MAX_CROP_PIXELS**0.5)}x{int(MAX_CROP_PIXELS**0.5)})")
    return crop


def most_detailed(rgb: np.ndarray, size: tuple[int, int] = DEFAULT_CROP) -> Crop:
    """The ``size`` crop (width, height; at most the image's) of highest gradient energy in (H, W, 3) ``rgb``."""
    height, width = rgb.shape[:2]
    w, h = min(size[0], width), min(size[1], height)
    gray = rgb.mean(axis=2, dtype=np.float64)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.diff(gray, axis=1) ** 2
    energy[1:, :] += np.diff(gray, axis=0) ** 2
    summed = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = summed[h:, w:] - summed[:-h, w:] - summed[h:, :-w] + summed[:-h, :-w]  # every h x w box
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x), int(y), w, h


def candidates(upscaler: Upscaler, scale: float, anime: bool, noise: str = "none") -> list[str]:
    """The route's model for this scale, content and noise, then the sensible alternatives available here."""
    available = upscaler.store.entries()
    native = min((2, 3, 4), key=lambda s: (s < min(scale, 4), abs(s - scale)))
    if anime:
        names = [f"realcugan-x{native}-{'no-denoise' if noise == 'none' else 'conservative'}",
                 registry.X4PLUS_ANIME.name, registry.ANIMEVIDEO_V3.name, "waifu2x-cunet-x2", registry.X4PLUS.name]
    else:
        names = [registry.X4PLUS.name, f"dat-light-x{native}" if noise == "none" else "realsr-df2k-x4",
                 "realsr-df2k-x4", registry.X2PLUS.name, "waifu2x-upconv7-photo-x2", registry.ANIMEVIDEO_V3.name]
    route = upscaler.plan(scale, anime, noise=noise).model
    return list(dict.fromkeys(name for name in [route, *names] if name in available))


def window(crop: Crop, width: int, height: int) -> Crop:
    """The crop with `CONTEXT` around it, its origin on `ALIGN`, clipped to the image: (x, y, w, h)."""
    x, y, w, h = crop
    x0, y0 = max(x - CONTEXT, 0) // ALIGN * ALIGN, max(y - CONTEXT, 0) // ALIGN * ALIGN
    x1, y1 = min(x + w + CONTEXT, width), min(y + h + CONTEXT, height)
    return x0, y0, x1 - x0, y1 - y0


def run_crop(upscaler: Upscaler, rgb: np.ndarray, crop: Crop, model: str, scale: float,
             cancelled: CancelFn | None = None) -> Candidate:
    """``model`` on ``crop`` of (H, W, 3) float32 ``rgb``, at ``scale`` (native, then Lanczos where they
    differ); ``cancelled`` is polled at every network step (True raises `Cancelled`)."""
    height, width = rgb.shape[:2]
    x, y, w, h = check_crop(crop, width, height)
    wx, wy, ww, wh = window(crop, width, height)
    loaded = upscaler.load(model)
    native = loaded.entry.scale
    options = replace(upscaler.tile_options(ww * wh * native**2, loaded.entry.name), tile=0)
    started = time.perf_counter()
    out = upscale_tiled(loaded.module, np.ascontiguousarray(rgb[wy : wy + wh, wx : wx + ww]), scale=native,
                        size_multiple=loaded.size_multiple, options=options, device=loaded.device,
                        dtype=loaded.dtype, channels_last=loaded.channels_last, cancelled=cancelled)
    seconds = time.perf_counter() - started
    # A crop's run teaches the whole image's estimate: under the key `Upscaler.estimate_seconds` reads.
    key = rate_key(upscaler.store.key(loaded.entry.name), loaded.backend, str(loaded.device))
    upscaler.rates.learn(key, seconds, ww * wh)
    part = out[(y - wy) * native : (y - wy + h) * native, (x - wx) * native : (x - wx + w) * native]
    size = registry.output_size(w, h, scale)
    pixels = np.clip(part, 0, 1) if size == (w * native, h * native) else resample(part, size)
    return Candidate(loaded.entry.name, loaded.entry.title, pixels.astype(np.float32), round(seconds, 3),
                     round(upscaler.estimate_seconds(model, width, height), 1), loaded.entry.note)


def compare(upscaler: Upscaler, rgb: np.ndarray, scale: float, crop: Crop | None = None,
            models: list[str] | None = None, anime: bool = False, noise: str = "none") -> tuple[Crop, list[Candidate]]:
    """Every candidate on the crop (the most detailed region when None). Raises InvalidOptionError,
    ModelNotFoundError, UnsupportedScaleError."""
    height, width = rgb.shape[:2]
    crop = check_crop(crop, width, height) if crop is not None else most_detailed(rgb)
    check_output_size(width, height, scale, upscaler.settings.max_output_pixels)
    names = models or candidates(upscaler, scale, anime, noise)
    return crop, [run_crop(upscaler, rgb, crop, name, scale) for name in names]
