"""Opening untrusted media without letting it cost memory: FFmpeg reads a container's first picture
to learn its size, and a few hundred bytes may declare a 16000x16000 one. Every open here hands
FFmpeg a pixel ceiling first (format and decoder alike), so such a picture is never allocated;
FFmpeg then reports its size as 0x0, which the caller must refuse (`declared_size`).

Also what a file's first bytes say: whether it is meant to be a video container (`looks_like_video`),
so a broken one is called a damaged video rather than an unreadable image.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import av

from esrgan.video.errors import VideoTooLargeError

# Bytes 4..8 of an ISO media file (MP4, MOV, 3GP): its first box.
ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
MAGIC = (
    (0, b"\x1a\x45\xdf\xa3"),  # EBML: Matroska, WebM
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),  # ASF, WMV
)
TS_PACKET = 188  # an MPEG transport stream: a sync byte every 188 bytes
HEAD_BYTES = 2 * TS_PACKET + 1
FFMPEG_MAX_PIXELS = 2**31 - 1  # the option is a C int


def open_media(source: str | Path | IO[bytes], max_pixels: int) -> av.container.InputContainer:
    """``av.open`` with no picture over ``max_pixels`` ever decoded, now or by the returned
    container's own decoders (each picture stream's decoder gets the ceiling too).

    Raises:
        What ``av.open`` raises (FFmpegError, OSError, ValueError, UnicodeDecodeError).
    """
    ceiling = {"max_pixels": str(pixel_ceiling(max_pixels))}
    container = av.open(source if not isinstance(source, Path) else str(source), options=ceiling)
    try:
        for stream in container.streams.video:
            if stream.codec_context is not None:  # None: this build has no decoder for it (an SVG), nothing decodes
                stream.codec_context.options = {**stream.codec_context.options, **ceiling}
    except BaseException:
        container.close()
        raise
    return container


def pixel_ceiling(max_pixels: int) -> int:
    """``max_pixels`` as FFmpeg's option takes it (an int: "no limit" is its largest)."""
    return max(1, min(int(max_pixels), FFMPEG_MAX_PIXELS))


def declared_size(stream, max_pixels: int, name: str) -> tuple[int, int]:
    """A picture stream's size as FFmpeg read it under ``max_pixels`` (`open_media`).

    Raises:
        VideoTooLargeError: Over the ceiling, or a size FFmpeg could not learn below it (0x0: it
            would have had to decode a larger picture).
    """
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoTooLargeError(f"{name} declares frames whose size cannot be read without decoding more than "
                                 f"{max_pixels / 1e6:.1f} MP, the limit: downscale it first")
    if width * height > max_pixels:
        raise VideoTooLargeError(f"{name} is {width}x{height} ({width * height / 1e6:.1f} MP a frame); "
                                 f"the limit is {max_pixels / 1e6:.1f} MP: downscale it first")
    return width, height


def looks_like_video(head: bytes) -> bool:
    """Whether a file's first bytes are those of a video container (a broken one too)."""
    if head[4:8] in ISO_BOXES:
        return True
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return True
    if len(head) > 2 * TS_PACKET and all(head[i] == 0x47 for i in (0, TS_PACKET, 2 * TS_PACKET)):
        return True
    return any(head[at : at + len(magic)] == magic for at, magic in MAGIC)


def file_head(source: str | Path | IO[bytes]) -> bytes:
    """The first bytes of a file or a stream (a stream is left where it was)."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            return handle.read(HEAD_BYTES)
    where = source.tell()
    try:
        return source.read(HEAD_BYTES)
    finally:
        source.seek(where)
