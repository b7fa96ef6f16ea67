"""Hostile and broken video files the tests write themselves, each a few hundred bytes: a MOV of PNG
pictures whose headers declare a huge size (a decompression bomb), one whose later frame grows,
containers with their insides lost or replaced by noise, a clip that starts an hour in."""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SIDE = 16  # the size the pictures really have


def png_mov(frames: int = 1) -> bytearray:
    """A MOV of ``frames`` SIDE x SIDE PNG pictures, one a second."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mov") as out:
        stream = out.add_stream("png", rate=1)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "rgb24"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((SIDE, SIDE, 3), 30 * i % 256, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return bytearray(buffer.getvalue())


def declare_png_size(data: bytearray, side: int, which: int | None = None) -> None:
    """Rewrite the PNG headers (each IHDR and its CRC) to say ``side`` x ``side``: all, or the
    ``which``-th picture's only."""
    found, at = 0, 0
    while (at := data.find(b"IHDR", at)) != -1:
        if which is None or found == which:
            data[at + 4 : at + 12] = struct.pack(">II", side, side)
            data[at + 17 : at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at : at + 17])))
        found, at = found + 1, at + 1


def bomb_mov(side: int = 16000) -> bytes:
    """A MOV whose container and picture headers both declare ``side`` x ``side`` PNG frames: any
    reader that decodes its first picture to learn its size allocates side * side * 3 bytes."""
    data = png_mov()
    declare_png_size(data, side)
    entry = data.find(b"png ")  # the sample description: 24 bytes on come width and height
    data[entry + 28 : entry + 32] = struct.pack(">HH", side, side)
    tkhd = data.find(b"tkhd")  # version 0: width and height (16.16) close the box
    at = tkhd + 4 + 4 * 6 + 8 + 8 + 36
    data[at : at + 8] = struct.pack(">II", side << 16, side << 16)
    return bytes(data)


def growing_mov(frames: int = 3, grown: int = 1, side: int = 5000) -> bytes:
    """A MOV of SIDE x SIDE pictures whose ``grown``-th (0-based) says it is ``side`` x ``side``."""
    data = png_mov(frames)
    declare_png_size(data, side, which=grown)
    return bytes(data)


def noise_after_header(path: Path, keep: int, seed: int = 0) -> bytes:
    """The first ``keep`` bytes of a real file, then as many random bytes as the rest."""
    data = path.read_bytes()
    rest = np.random.default_rng(seed).integers(0, 256, len(data) - keep, dtype=np.uint8).tobytes()
    return data[:keep] + rest


def without_box(path: Path, box: bytes) -> bytes:
    """A real MP4 with one top-level box (``moov``: its index) renamed to a box nobody reads."""
    data = bytearray(path.read_bytes())
    at = 0
    while at + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[at : at + 8])
        if name == box:
            data[at + 4 : at + 8] = b"junk"
            return bytes(data)
        at += size
    raise ValueError(f"no {box!r} box in {path.name}")


def declare_samples(path: Path, count: int) -> bytes:
    """A real MP4 whose picture track's sample table (``stsz``) says it holds ``count`` samples."""
    data = bytearray(path.read_bytes())
    at = data.find(b"stsz")  # then version and flags, a common sample size, the count
    data[at + 12 : at + 16] = struct.pack(">I", count)
    return bytes(data)


def late_start_mkv(path: Path, start_s: int = 3600, frames: int = 8, rate: int = 12) -> Path:
    """A Matroska clip of ``frames`` pictures whose timestamps start ``start_s`` in."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 20 * i, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = start_s * 1000 + i * 1000 // rate, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
