"""Decoding by content with limits checked first, and encodings that keep what the input had."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from esrgan.errors import ImageTooLargeError, InvalidImageError
from esrgan.io.imageio import DecodedImage, decode, encode, to_uint8, write_image
from tests.conftest import crop_of, png_bytes


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size in its IHDR and carries (almost) no pixels: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_decompression_bomb_is_refused_from_the_header():
    with pytest.raises(ImageTooLargeError, match="50000x50000"):
        decode(png_header_only(50000, 50000))


def test_pixel_limit_is_configurable():
    data = png_bytes(crop_of("coffee.png", (0, 0, 40, 30)))
    assert decode(data, max_pixels=1200).width == 40
    with pytest.raises(ImageTooLargeError, match="limit"):
        decode(data, max_pixels=1199)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text\n", "not an image"),
        (b"<!doctype html><html><body>hi</body></html>", "not an image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image"),
    ],
)
def test_non_images_are_refused_with_a_reason(data, message):
    with pytest.raises(InvalidImageError, match=message):
        decode(data)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_files_are_refused(fmt):
    crop = crop_of("astronaut_badge.png", (0, 0, 64, 64))
    data = png_bytes(crop) if fmt == "png" else jpeg_bytes(crop)
    with pytest.raises(InvalidImageError):
        decode(data[: len(data) // 2])


def test_animated_gif_is_refused_and_gif_is_not_accepted():
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(InvalidImageError, match="not supported"):
        decode(buffer.getvalue())


def test_exif_orientation_is_applied():
    crop = crop_of("coffee.png", (0, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    decoded = decode(jpeg_bytes(crop, exif=exif.tobytes(), quality=95))
    assert (decoded.width, decoded.height) == (20, 40)
    expected = np.asarray(crop.transpose(Image.Transpose.ROTATE_270), np.float32) / 255
    assert np.abs(decoded.pixels - expected).mean() < 0.03


def test_grayscale_palette_cmyk_and_alpha_modes_decode():
    gray = decode(png_bytes(crop_of("camera.png", (0, 0, 16, 16), "L")))
    assert gray.pixels.shape == (16, 16, 1)
    palette = crop_of("coffee.png", (0, 0, 16, 16)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert decode(png_bytes(palette)).pixels.shape == (16, 16, 3)
    cmyk = decode(jpeg_bytes(crop_of("coffee.png", (0, 0, 16, 16)).convert("CMYK")))
    assert cmyk.pixels.shape == (16, 16, 3)
    rgba = crop_of("coffee.png", (0, 0, 16, 16), "RGBA")
    assert decode(png_bytes(rgba)).has_alpha


def test_16bit_png_round_trips_with_16_bits():
    rng = np.random.default_rng(1)
    array = rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16)
    ok, data = cv2.imencode(".png", array[..., ::-1])
    decoded = decode(data.tobytes())
    assert decoded.bit_depth == 16
    np.testing.assert_array_equal(np.round(decoded.pixels * 65535).astype(np.uint16), array)
    again = cv2.imdecode(np.frombuffer(encode(decoded, "png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert again.dtype == np.uint16
    np.testing.assert_array_equal(again[..., ::-1], array)


def test_icc_profile_is_carried_to_8_and_16_bit_output():
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = DecodedImage(np.full((4, 4, 3), 0.5, np.float32), icc_profile=profile)
    with Image.open(io.BytesIO(encode(image, "jpg"))) as jpg:
        assert jpg.info["icc_profile"] == profile
    deep = DecodedImage(image.pixels, bit_depth=16, icc_profile=profile)
    with Image.open(io.BytesIO(encode(deep, "png"))) as png:
        assert png.info["icc_profile"] == profile


def test_jpeg_output_flattens_alpha_onto_white():
    pixels = np.zeros((4, 4, 4), np.float32)  # transparent black
    with Image.open(io.BytesIO(encode(DecodedImage(pixels), "jpg"))) as jpg:
        assert jpg.mode == "RGB" and np.asarray(jpg).min() > 250


@pytest.mark.parametrize(("bits", "channels"), [(8, 3), (8, 1), (16, 4), (8, 2)])
def test_write_image_streams_pngs_with_the_same_pixels_as_encode(tmp_path, bits, channels):
    pixels = np.random.default_rng(2).random((9, 7, channels), dtype=np.float32)
    image = DecodedImage(pixels, bit_depth=bits)
    target = tmp_path / "out.png"
    write_image(target, image)
    written = cv2.imdecode(np.frombuffer(target.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    encoded = cv2.imdecode(np.frombuffer(encode(image, "png"), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(written, encoded)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.parametrize(("channels", "gray", "alpha"), [(1, True, False), (2, True, True), (3, False, False),
                                                          (4, False, True)])
def test_rgb_alpha_and_with_rgb_keep_what_kind_of_image_it_is(channels, gray, alpha):
    pixels = np.random.default_rng(3).random((5, 7, channels), dtype=np.float32)
    image = DecodedImage(pixels, bit_depth=16, source_format="tiff", icc_profile=b"profile")
    rgb = image.rgb()
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], pixels[..., 0 if gray else c])
    assert (image.alpha is not None) == alpha and image.color.shape[2] == (1 if gray else 3)
    if alpha:
        np.testing.assert_array_equal(image.alpha, pixels[..., -1:])

    darker = image.with_rgb(rgb * 0.5)
    assert darker.pixels.shape == pixels.shape
    assert (darker.bit_depth, darker.source_format, darker.icc_profile) == (16, "tiff", b"profile")
    np.testing.assert_allclose(darker.rgb(), rgb * 0.5, atol=1e-7)
    if alpha:
        np.testing.assert_array_equal(darker.alpha, image.alpha)

    bigger = np.full((10, 14, 3), 0.25, np.float32)
    if alpha:  # a new size needs its own alpha: the caller resizes it
        with pytest.raises(ValueError, match="alpha"):
            image.with_rgb(bigger)
        resized = image.with_rgb(bigger, np.ones((10, 14, 1), np.float32))
        assert resized.pixels.shape == (10, 14, channels) and (resized.alpha == 1).all()
    else:
        assert image.with_rgb(bigger).pixels.shape == (10, 14, channels)


def test_to_uint8_rounds_clips_and_keeps_the_shape():
    pixels = np.array([-0.1, 0.0, 0.25, 0.5, 1.0, 1.2, 1 / 255, 0.49 / 255], np.float32).reshape(1, 8, 1)
    out = to_uint8(pixels)
    assert out.dtype == np.uint8 and out.shape == (1, 8, 1)
    assert out.ravel().tolist() == [0, 0, 64, 128, 255, 255, 1, 0]
