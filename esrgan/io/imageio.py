"""Decode and encode images: format by content, pixel limits before decoding, EXIF orientation,
alpha, grayscale, palette, 16-bit PNG and ICC profiles. Writes are atomic (`esrgan.io.atomic`); the PNG
details Pillow lacks are in `esrgan.io.png`.

Pixels travel through the engine as ``(H, W, C)`` float32 in [0, 1] with C = 1 (gray), 2 (gray +
alpha), 3 (RGB) or 4 (RGBA); an 8-bit RGB result made on the device (`esrgan.tiling.canvas`) comes back as
uint8, rounded as `to_uint8` rounds, and every encoder takes it as it is.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from esrgan.errors import (
    FormatSizeError,
    ImageTooLargeError,
    InvalidImageError,
    RemasterError,
    UnsupportedFormatError,
)
from esrgan.io.atomic import atomic_file, write_atomic
from esrgan.io.metadata import ImageMetadata, pillow_options, png_chunks, read_metadata
from esrgan.io.png import ROWS_PER_BAND, decode_png16_color, is_16bit_png, write_png

OutputFormat = Literal["png", "jpg", "webp"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("png", "jpg", "webp")
# What we accept, by the decoder's reading of the content (never the file name). MPO is what many
# phone cameras write for JPEG; we take its first picture.
# A file that is no image we read: what we take instead, images and videos alike (the page's check says the same).
NEITHER_IMAGE_NOR_VIDEO = ("not an image or a video we can read: images may be JPEG, PNG, WebP, BMP or TIFF, "
                           "videos and animations MP4, WebM, MKV, MOV, AVI, GIF, animated WebP or PNG")
INPUT_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}
DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096
EXIF_ORIENTATION_TAG = 0x0112
# The largest side each output format can hold (libwebp's and libjpeg's own limits; PNG has none
# that a pixel limit would not hit first).
MAX_SIDE_BY_FORMAT: dict[str, int] = {"webp": 16383, "jpg": 65500}
# Pillow warns (and can raise) on huge images itself; we check our own limit first, so lift its.
Image.MAX_IMAGE_PIXELS = None


@dataclass
class DecodedImage:
    """An image ready for the engine.

    Attributes:
        pixels: (H, W, C) float32 in [0, 1]; C is 1, 2, 3 or 4 (gray, gray+alpha, RGB, RGBA); or
            (H, W, 3) uint8 for an 8-bit result made on the device (`as_float` reads either).
        bit_depth: 8 or 16: the precision of the source, kept on output where the format allows.
        source_format: The format read from the content, e.g. ``"png"``.
        icc_profile: The embedded colour profile, carried over to the output.
        metadata: EXIF, XMP and text, carried over to the output as its format allows (`esrgan.io.metadata`).
    """

    pixels: np.ndarray
    bit_depth: int = 8
    source_format: str = "png"
    icc_profile: bytes | None = field(default=None, repr=False)
    metadata: ImageMetadata | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)

    @property
    def is_gray(self) -> bool:
        return self.pixels.shape[2] in (1, 2)

    @property
    def alpha(self) -> np.ndarray | None:
        """(H, W, 1) float32 alpha in [0, 1], or None for an opaque image."""
        return self.pixels[..., -1:] if self.has_alpha else None

    @property
    def color(self) -> np.ndarray:
        """(H, W, 1 or 3) the colour channels without alpha: gray stays one channel."""
        return self.pixels[..., :-1] if self.has_alpha else self.pixels

    def rgb(self) -> np.ndarray:
        """(H, W, 3) float32 RGB without alpha, as the networks take it: gray in three equal channels."""
        return as_float(to_rgb(self.pixels))

    def with_rgb(self, rgb: np.ndarray, alpha: np.ndarray | None = None) -> DecodedImage:
        """This image (bit depth, format, ICC profile, gray or colour, alpha or not) with new RGB pixels.

        Args:
            rgb: (H', W', 3) float32 in [0, 1], e.g. a network's output, or uint8 (an 8-bit result
                made on the device); a gray image keeps the channels' mean.
            alpha: (H', W', 1) alpha to carry, when this image has alpha and the size changed (the
                caller resizes it: how is its choice); by default this image's own alpha.

        Raises:
            ValueError: The alpha's size does not match ``rgb`` (a programming error).
        """
        if rgb.dtype == np.uint8 and (self.is_gray or self.has_alpha):
            rgb = as_float(rgb)
        color = rgb.mean(axis=2, keepdims=True, dtype=np.float32) if self.is_gray else rgb
        if self.has_alpha:
            alpha = self.alpha if alpha is None else alpha
            if alpha.shape[:2] != rgb.shape[:2]:
                raise ValueError(f"alpha is {alpha.shape[1]}x{alpha.shape[0]}, the colour "
                                 f"{rgb.shape[1]}x{rgb.shape[0]}: resize the alpha too")
            color = np.concatenate([color, alpha.astype(np.float32, copy=False)], axis=2)
        return replace(self, pixels=color)


def as_float(pixels: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]: uint8 divided by 255 (as `decode` reads 8-bit files); float as it is."""
    return pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) pixels of any layout above (any dtype) -> (H, W, 3): alpha dropped, gray repeated."""
    color = pixels[..., :-1] if pixels.shape[2] in (2, 4) else pixels
    return np.repeat(color, 3, axis=2) if color.shape[2] == 1 else color


def decode(data: bytes, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> DecodedImage:
    """Decode image bytes for the engine, applying EXIF orientation.

    Raises:
        InvalidImageError: Empty, truncated, damaged, not an image, animated, an unsupported format,
            or pixels that are not finite numbers (NaN or infinity in a float TIFF).
        ImageTooLargeError: More pixels than ``max_pixels`` (checked before decoding the pixels).
    """
    try:
        with _open(data) as image:
            source_format, _, _ = _check_header(image, max_pixels)
            icc = image.info.get("icc_profile")
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
            if is_16bit_png(data) and image.mode not in ("I;16", "I", "I;16B"):
                pixels, depth = decode_png16_color(data), 16
            else:
                pixels, depth = _pil_to_float(image)
            metadata = read_metadata(image)
    except RemasterError:
        raise
    except Exception as exc:
        # Untrusted bytes reach deep into Pillow's plugins, which raise whatever their parsing hits
        # (OSError, ValueError, TypeError, struct.error, EOFError, ...: a TIFF whose IFD chain
        # points past the end gives "TypeError: Missing dimensions"). All mean the same to a user.
        raise InvalidImageError(f"the image is damaged or truncated ({type(exc).__name__}: {exc})") from exc
    pixels = _apply_orientation(pixels, orientation)
    return DecodedImage(np.ascontiguousarray(pixels), depth, source_format, icc, metadata)


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> DecodedImage:
    """Read and decode an image file. Raises as `decode`, and InvalidImageError if unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidImageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decode(data, max_pixels)


def check_encodable(output_format: str, width: int, height: int) -> None:
    """Refuse, before any work, a result of ``width`` x ``height`` that ``output_format`` cannot hold.

    Raises:
        FormatSizeError: A side is longer than the format allows (WebP 16383 px, JPEG 65500 px).
    """
    limit = MAX_SIDE_BY_FORMAT.get(output_format)
    if limit is not None and max(width, height) > limit:
        name = {"jpg": "JPEG", "webp": "WebP"}[output_format]
        raise FormatSizeError(
            f"the result would be {width}x{height}; {name} holds at most {limit} px a side. "
            "Choose PNG or a smaller scale."
        )


def encode(image: DecodedImage, fmt: OutputFormat = "png", quality: int = 95, keep_gps: bool = False) -> bytes:
    """Encode to PNG (8 or 16 bit, as the source), JPEG or WebP; returns the file's bytes. The ICC
    profile and the metadata go with it (`esrgan.io.metadata`: the GPS position only if ``keep_gps``).

    JPEG has no alpha channel: a transparent image is flattened onto white.
    """
    if fmt not in OUTPUT_FORMATS:
        raise InvalidImageError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, not {fmt!r}")
    check_encodable(fmt, image.width, image.height)
    pixels = image.pixels
    if fmt == "png":
        buffer = io.BytesIO()
        write_png(buffer, pixels, 16 if image.bit_depth == 16 else 8, image.icc_profile,
                  chunks=png_chunks(image.metadata, image.width, image.height, keep_gps))
        return buffer.getvalue()
    if fmt == "jpg" and image.has_alpha:
        pixels = as_float(pixels)
        color, alpha = pixels[..., :-1], np.clip(pixels[..., -1:], 0, 1)
        pixels = color * alpha + (1.0 - alpha)
    pil = Image.fromarray(_to_uint8(pixels), _PIL_MODES[pixels.shape[2]])
    options: dict = {"icc_profile": image.icc_profile} if image.icc_profile else {}
    options.update(pillow_options(image.metadata, fmt, image.width, image.height, keep_gps))
    buffer = io.BytesIO()
    if fmt == "jpg":
        pil.save(buffer, "JPEG", quality=quality, subsampling=0 if quality >= 90 else 2, **options)
    else:
        pil.save(buffer, "WEBP", quality=quality, method=4, **options)
    return buffer.getvalue()


def write_image(path: str | Path, image: DecodedImage, fmt: OutputFormat = "png", quality: int = 95,
                keep_gps: bool = False) -> None:
    """Encode (as `encode`) and write atomically; a PNG streams into the file (see
    `esrgan.io.png.write_png`). Raises as `write_atomic`, and FormatSizeError for a size the format cannot hold."""
    if fmt != "png":
        write_atomic(path, encode(image, fmt, quality, keep_gps))
        return
    with atomic_file(path) as handle:
        write_png(handle, image.pixels, 16 if image.bit_depth == 16 else 8, image.icc_profile,
                  chunks=png_chunks(image.metadata, image.width, image.height, keep_gps))


def format_for_path(path: str | Path) -> OutputFormat:
    """The output format a file name asks for by its extension (png when it names none we write)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"jpeg": "jpg", "jpg": "jpg", "webp": "webp"}.get(suffix, "png")  # type: ignore[return-value]


# --- decoding helpers -------------------------------------------------------------------------

_PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _open(data: bytes) -> Image.Image:
    if not data:
        raise InvalidImageError("the file is empty (0 bytes)")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnsupportedFormatError(NEITHER_IMAGE_NOR_VIDEO) from exc
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise InvalidImageError(f"the image header is damaged ({exc})") from exc


def _check_header(image: Image.Image, max_pixels: int | None) -> tuple[str, int, int]:
    kind = INPUT_FORMATS.get(image.format or "")
    if kind is None:
        raise UnsupportedFormatError(
            f"{image.format or 'this'} images are not supported; use JPEG, PNG, WebP, BMP or TIFF"
        )
    if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:
        raise UnsupportedFormatError("animated or multi-page images are not supported; upload one frame")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError("the image has no pixels")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} ({width * height / 1e6:.1f} MP); "
            f"the limit is {max_pixels / 1e6:.1f} MP. Downscale or crop it first."
        )
    return kind, width, height


def _pil_to_float(image: Image.Image) -> tuple[np.ndarray, int]:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32) / 65535.0
        return np.clip(array, 0, 1)[..., None], 16
    if mode == "F":
        array = np.asarray(image, dtype=np.float32)
        if not np.isfinite(array).all():  # clipping would turn them into plausible-looking pixels
            raise InvalidImageError("the image holds pixels that are not numbers (NaN or infinity); export it again")
        return np.clip(array, 0, 1)[..., None], 16
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "1":
        image = image.convert("L")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    return array, 8


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip (H, W, C) pixels so they look as EXIF orientation 1 would (see ImageOps)."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.rot90(a[:, ::-1], 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a[:, ::-1], -1),
        8: lambda a: np.rot90(a, 1),
    }
    return transforms.get(orientation, lambda a: a)(pixels)


# --- encoding helpers -------------------------------------------------------------------------

def _quantise(pixels: np.ndarray, dtype: type, peak: float) -> np.ndarray:
    """[0, 1] floats (clipped here) to rounded integers, a band of rows at a time."""
    out = np.empty(pixels.shape, dtype)
    for top in range(0, pixels.shape[0], ROWS_PER_BAND):
        band = pixels[top : top + ROWS_PER_BAND]
        out[top : top + ROWS_PER_BAND] = np.clip(band * peak + 0.5, 0, peak)
    return out


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] (clipped here) -> uint8 of the same shape, rounded half up; uint8
    pixels are returned as they are (no copy)."""
    return pixels if pixels.dtype == np.uint8 else _quantise(pixels, np.uint8, 255.0)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """`to_uint8` in Pillow's layout: one channel as a 2-D array."""
    out = to_uint8(pixels)
    return out[..., 0] if out.shape[2] == 1 else out
