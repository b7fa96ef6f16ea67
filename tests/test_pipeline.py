"""End to end through the engine with real weights on small real images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from esrgan.errors import ImageTooLargeError
from esrgan.imageio import DecodedImage, decode, encode
from esrgan.pipeline import UpscaleOptions, Upscaler
from tests.conftest import crop_of, png_bytes, psnr


def test_4x_photo_looks_like_the_input_but_sharper(upscaler, small_photo):
    result = upscaler.upscale(DecodedImage(small_photo), 4)
    out = result.image.pixels
    assert out.shape == (128, 160, 3)
    # Downscaled back, the result must agree with the input (it is the same photo) ...
    back = np.asarray(Image.fromarray((out * 255).astype(np.uint8)).resize((40, 32), Image.BICUBIC)) / 255
    assert psnr(back, small_photo) > 25
    # ... and it must not be a blurry bicubic enlargement: Real-ESRGAN restores edges.
    bicubic = np.asarray(Image.fromarray((small_photo * 255).astype(np.uint8)).resize((160, 128), Image.BICUBIC)) / 255
    assert np.abs(np.diff(out, axis=1)).mean() > 1.1 * np.abs(np.diff(bicubic, axis=1)).mean()
    p = result.provenance
    assert (p.model, p.native_scale, p.scale, p.resample, p.precision) == ("realesrgan-x4plus", 4, 4, None, "fp32")


def test_2x_anime_uses_the_native_2x_anime_model(upscaler):
    art = decode(png_bytes(crop_of("Set14/comic.png", (40, 40, 72, 64))))
    result = upscaler.upscale(art, 2, anime=True)
    assert result.image.pixels.shape == (48, 64, 3)
    assert result.provenance.model == "realcugan-x2-no-denoise"
    assert result.provenance.resample is None


def test_alpha_is_upscaled_not_dropped(upscaler):
    rgba = crop_of("Set5/bird.png", (100, 100, 124, 120), "RGBA")
    alpha = np.zeros((20, 24), np.uint8)
    alpha[:, 12:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    result = upscaler.upscale(decode(png_bytes(rgba)), 2, model="realesr-animevideov3")
    out = result.image.pixels
    assert out.shape == (40, 48, 4)
    assert out[:, :20, 3].max() < 0.05 and out[:, 28:, 3].min() > 0.95
    with Image.open(io.BytesIO(encode(result.image, "png"))) as png:
        assert png.mode == "RGBA" and png.size == (48, 40)


def test_grayscale_stays_grayscale(upscaler):
    gray = decode(png_bytes(crop_of("Set14/bridge.png", (0, 0, 20, 16), "L")))
    result = upscaler.upscale(gray, 2, model="realesr-animevideov3")
    assert result.image.pixels.shape == (32, 40, 1)
    with Image.open(io.BytesIO(encode(result.image, "png"))) as png:
        assert png.mode == "L"


def test_16bit_input_gives_16bit_output(upscaler):
    import cv2

    crop = np.asarray(crop_of("Set5/head.png", (60, 60, 76, 72)), np.uint16) * 257
    _, data = cv2.imencode(".png", np.ascontiguousarray(crop[..., ::-1]))
    result = upscaler.upscale(decode(data.tobytes()), 2, model="realesr-animevideov3")
    again = cv2.imdecode(np.frombuffer(encode(result.image, "png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert again.dtype == np.uint16 and again.shape == (24, 32, 3)
    assert len(np.unique(again)) > 256  # really uses the 16 bits


def test_output_pixel_limit_is_checked_before_any_work(store):
    upscaler = Upscaler(store, UpscaleOptions(device="cpu", max_output_pixels=100_000))
    with pytest.raises(ImageTooLargeError, match="smaller scale"):
        upscaler.upscale(DecodedImage(np.zeros((50, 50, 3), np.float32)), 8)


def test_tiny_images_upscale(upscaler):
    for shape in [(1, 1, 3), (1, 40, 3)]:
        out = upscaler.upscale(DecodedImage(np.full(shape, 0.5, np.float32)), 2, model="realesr-animevideov3")
        assert out.image.pixels.shape == (shape[0] * 2, shape[1] * 2, 3)
