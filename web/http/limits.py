"""The limits an upload must keep, as data the page and API clients read before sending.

One home for what the server accepts per kind of input (images here; the video's beside them where
it lands): the bytes of one upload, the input types by their first bytes (the server decides by
content, never by name), and the pixel limits. `web.http.pages` hands them to the template, ``GET
/api/models`` lists them under ``limits``.
"""

from __future__ import annotations

from collections.abc import Mapping

from esrgan.io.imageio import INPUT_FORMATS
from esrgan.models.registry import MAX_SCALE, MIN_SCALE

# Format (as `esrgan.io.imageio.INPUT_FORMATS` names it) -> MIME type.
MIME_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "bmp": "image/bmp",
              "tiff": "image/tiff"}
# What each accepted type's file starts with: (MIME type, byte offset, bytes in hex). A WebP is
# "RIFF" at 0 and "WEBP" at 8; a TIFF is little- or big-endian. A browser can check these on the
# first 12 bytes of a file; the server's decoder has the last word.
MAGIC_BYTES: tuple[tuple[str, int, str], ...] = (
    ("image/jpeg", 0, "ffd8ff"),
    ("image/png", 0, "89504e470d0a1a0a"),
    ("image/webp", 0, "52494646"),
    ("image/webp", 8, "57454250"),
    ("image/bmp", 0, "424d"),
    ("image/tiff", 0, "49492a00"),
    ("image/tiff", 0, "4d4d002a"),
)


def input_types() -> list[str]:
    """MIME types of the images the server decodes, in a stable order."""
    return list(dict.fromkeys(MIME_TYPES[kind] for kind in INPUT_FORMATS.values()))


def image_limits(config: Mapping) -> dict:
    """The image limits of this server, as the page and ``/api/models`` show them.

    Keys: ``max_upload_bytes`` (one request's body, form fields included), ``input_types`` (MIME
    types), ``magic_bytes`` (``{"type", "offset", "hex"}``: all rows of a type must match),
    ``max_input_pixels``, ``max_output_pixels``, ``max_work_pixels`` (what the model processes,
    tile context and padding included: only the estimate can tell it), ``min_scale``, ``max_scale``.
    """
    return {
        "max_upload_bytes": int(config["MAX_CONTENT_LENGTH"]),
        "input_types": input_types(),
        "magic_bytes": [{"type": kind, "offset": offset, "hex": magic} for kind, offset, magic in MAGIC_BYTES],
        "max_input_pixels": int(config["MAX_INPUT_PIXELS"]),
        "max_output_pixels": int(config["MAX_OUTPUT_PIXELS"]),
        "max_work_pixels": int(config["MAX_WORK_PIXELS"]),
        "min_scale": MIN_SCALE,
        "max_scale": MAX_SCALE,
    }
