"""PNG details Pillow does not cover: 16-bit colour decoding, and a streaming writer (8 or 16 bit, ICC)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import cv2
import numpy as np

from esrgan.errors import InvalidImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # gray, gray+alpha, RGB, RGBA
PNG_FILTER_UP = 2
ROWS_PER_BAND = 256  # rows converted at a time: no full-size temporary for a huge image


def is_16bit_png(data: bytes) -> bool:
    """Whether PNG bytes declare 16 bits a sample (the IHDR's bit depth)."""
    return data.startswith(PNG_SIGNATURE) and len(data) > 25 and data[24] == 16


def decode_png16_color(data: bytes) -> np.ndarray:
    """Pillow keeps only 8 bits of colour PNGs; OpenCV keeps all 16."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise InvalidImageError("the 16-bit PNG is damaged or truncated")
    if array.ndim == 2:
        array = array[..., None]
    elif array.shape[2] == 3:
        array = array[..., ::-1]
    elif array.shape[2] == 4:
        array = array[..., [2, 1, 0, 3]]
    return array.astype(np.float32) / 65535.0


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(handle, pixels: np.ndarray, bits: int, icc_profile: bytes | None, level: int = 6,
              chunks: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Stream a PNG of (H, W, C) [0, 1] float pixels (or uint8 ones, taken as they are) into
    ``handle``, a band of rows at a time; ``chunks`` (type, data), e.g. metadata
    (`esrgan.io.metadata.png_chunks`), go before the pixels.

    Rows are quantised, "Up"-filtered and compressed as they go, so a huge result never exists
    as a second full-size array or as one compressed blob in memory.
    """
    height, width, channels = pixels.shape
    dtype, peak = (np.dtype(">u2"), 65535.0) if bits == 16 else (np.dtype(np.uint8), 255.0)
    handle.write(PNG_SIGNATURE)
    handle.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, PNG_COLOR_TYPES[channels], 0, 0, 0)))
    if icc_profile:
        handle.write(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    for kind, data in chunks:
        handle.write(_chunk(kind, data))
    compressor = zlib.compressobj(level)
    previous = np.zeros((1, width * channels * dtype.itemsize), np.uint8)
    for top in range(0, height, ROWS_PER_BAND):
        band = pixels[top : top + ROWS_PER_BAND]
        raw = _quantised(band, dtype, peak).reshape(len(band), -1).view(np.uint8)
        rows = np.empty((len(band), 1 + raw.shape[1]), np.uint8)
        rows[:, 0] = PNG_FILTER_UP
        np.subtract(raw, np.concatenate([previous, raw[:-1]]), out=rows[:, 1:])  # wraps mod 256
        previous = raw[-1:]
        data = compressor.compress(rows.tobytes())
        if data:
            handle.write(_chunk(b"IDAT", data))
    handle.write(_chunk(b"IDAT", compressor.flush()))
    handle.write(_chunk(b"IEND", b""))


def _quantised(band: np.ndarray, dtype: np.dtype, peak: float) -> np.ndarray:
    """A band of pixels as the PNG's samples: floats rounded half up; bytes kept (widened to 16 bits
    by 257, as 8-bit values are read into 16)."""
    if band.dtype == np.uint8:
        return band if dtype == np.uint8 else (band.astype(np.uint16) * 257).astype(dtype)
    return np.clip(band * peak + 0.5, 0, peak).astype(dtype)
