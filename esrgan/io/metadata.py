"""An image's metadata through the upscale: EXIF, XMP and PNG text, read at decode and written by
the encoder as each output format allows (the ICC profile travels beside them, `esrgan.io.imageio`).

* EXIF: kept in PNG (eXIf), JPEG (APP1) and WebP; its orientation is set to 1, since the decoder
  has already turned the pixels upright, and its pixel dimensions to the result's. The GPS position
  is removed unless the caller keeps it (``keep_gps``): a result is often shared further than its
  original.
* XMP: kept in PNG (iTXt "XML:com.adobe.xmp"), JPEG and WebP, with its orientation set to 1 and
  its GPS properties removed likewise.
* Text (PNG tEXt/zTXt/iTXt, a JPEG comment): PNG keeps every text chunk; JPEG keeps the comment
  (a PNG "Comment" becomes the JPEG comment); WebP has no place for text.

TIFF and BMP inputs carry none of it over (a TIFF's tags describe its own file layout).
Raw-profile text chunks (ImageMagick's copies of EXIF or XMP) are dropped: they would carry the
orientation and GPS that the chunks above normalise.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

EXIF_ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
EXIF_PIXEL_X, EXIF_PIXEL_Y = 0xA002, 0xA003
EXIF_HEADER = b"Exif\x00\x00"
XMP_KEY = "XML:com.adobe.xmp"
COMMENT_KEY = "Comment"
# Inputs whose EXIF is a camera's (a TIFF's tags describe its own layout: strips, compression...).
EXIF_FORMATS = ("JPEG", "MPO", "PNG", "WEBP")
DROPPED_TEXT_PREFIX = "Raw profile type "
TEXT_KEY_MAX = 79  # PNG keywords are 1-79 Latin-1 characters
_XMP_GPS_ATTRIBUTE = re.compile(rb'\s+exif:GPS\w+="[^"]*"')
_XMP_GPS_ELEMENT = re.compile(rb"<exif:GPS(\w+)\b[^>]*?(?:/>|>.*?</exif:GPS\1>)", re.DOTALL)
_XMP_ORIENTATION_ATTRIBUTE = re.compile(rb'(tiff:Orientation=")[^"]*(")')
_XMP_ORIENTATION_ELEMENT = re.compile(rb"(<tiff:Orientation>)[^<]*(</tiff:Orientation>)")


@dataclass(frozen=True)
class ImageMetadata:
    """What an input said about itself, beside its pixels and colour profile.

    Attributes:
        exif: The EXIF block as Pillow reads it (``Exif\\0\\0`` and a TIFF structure), or None.
        xmp: The XMP packet (UTF-8 XML), or None.
        text: PNG text chunks (keyword, text) in file order; a JPEG comment as ("Comment", text).
    """

    exif: bytes | None = None
    xmp: bytes | None = None
    text: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.exif or self.xmp or self.text)


def read_metadata(image: Image.Image) -> ImageMetadata | None:
    """The metadata of an opened (and loaded, so text after the pixels is seen) Pillow image. What
    cannot be read is left out: damaged metadata never costs a person their upscale."""
    try:
        return _read(image)
    except Exception:  # untrusted bytes: EXIF parsing raises what it hits
        return None


def _read(image: Image.Image) -> ImageMetadata | None:
    if image.format not in EXIF_FORMATS:
        return None
    info = image.info
    exif = image.getexif()
    xmp = info.get("xmp") or info.get(XMP_KEY)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    text = [(key, value) for key, value in info.items() if image.format == "PNG" and isinstance(key, str)
            and isinstance(value, str) and key not in (XMP_KEY, "xmp") and not key.startswith(DROPPED_TEXT_PREFIX)]
    comment = info.get("comment")
    if isinstance(comment, bytes) and image.format != "PNG":
        text.append((COMMENT_KEY, comment.decode("utf-8", errors="replace")))
    metadata = ImageMetadata(exif=exif.tobytes() if len(exif) else None, xmp=xmp or None, text=tuple(text))
    return metadata if metadata else None


def output_exif(exif: bytes | None, width: int, height: int, keep_gps: bool) -> bytes | None:
    """The EXIF block for a ``width`` x ``height`` result: orientation 1, the result's pixel
    dimensions, GPS removed unless ``keep_gps``. None when there is none (or it cannot be read)."""
    if not exif:
        return None
    parsed = Image.Exif()
    try:
        parsed.load(exif)
        parsed[EXIF_ORIENTATION] = 1
        if not keep_gps and GPS_IFD in parsed:
            parsed.get_ifd(GPS_IFD).clear()
            del parsed[GPS_IFD]
        details = parsed.get_ifd(EXIF_IFD)
        if details:
            details[EXIF_PIXEL_X], details[EXIF_PIXEL_Y] = width, height
        return parsed.tobytes()
    except Exception:  # damaged EXIF from an untrusted file: the result goes without it
        return None


def output_xmp(xmp: bytes | None, keep_gps: bool) -> bytes | None:
    """The XMP packet with orientation 1 and (unless ``keep_gps``) no GPS properties."""
    if not xmp:
        return None
    xmp = _XMP_ORIENTATION_ATTRIBUTE.sub(rb"\g<1>1\g<2>", xmp)
    xmp = _XMP_ORIENTATION_ELEMENT.sub(rb"\g<1>1\g<2>", xmp)
    if not keep_gps:
        xmp = _XMP_GPS_ELEMENT.sub(b"", _XMP_GPS_ATTRIBUTE.sub(b"", xmp))
    return xmp


def pillow_options(metadata: ImageMetadata | None, fmt: str, width: int, height: int, keep_gps: bool) -> dict:
    """Keyword arguments for Pillow's JPEG or WebP ``save`` that carry ``metadata``."""
    if not metadata:
        return {}
    options: dict = {}
    exif = output_exif(metadata.exif, width, height, keep_gps)
    xmp = output_xmp(metadata.xmp, keep_gps)
    if exif:
        options["exif"] = exif
    if xmp:
        options["xmp"] = xmp
    comment = dict(metadata.text).get(COMMENT_KEY)
    if fmt == "jpg" and comment:
        options["comment"] = comment.encode("utf-8")
    return options


def png_chunks(metadata: ImageMetadata | None, width: int, height: int, keep_gps: bool) -> list[tuple[bytes, bytes]]:
    """(chunk type, data) pairs for a PNG that carry ``metadata``: eXIf, the XMP iTXt, text chunks."""
    if not metadata:
        return []
    chunks = []
    exif = output_exif(metadata.exif, width, height, keep_gps)
    if exif:
        chunks.append((b"eXIf", exif.removeprefix(EXIF_HEADER)))
    xmp = output_xmp(metadata.xmp, keep_gps)
    if xmp:
        chunks.append(_itxt(XMP_KEY, xmp.decode("utf-8", errors="replace")))
    for key, value in metadata.text:
        if 1 <= len(key) <= TEXT_KEY_MAX and _latin1(key):
            chunks.append((b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")) if _latin1(value)
                          else _itxt(key, value))
    return chunks


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return "\0" not in text


def _itxt(key: str, value: str) -> tuple[bytes, bytes]:
    """An international text chunk, compressed when that pays."""
    raw = value.encode("utf-8")
    packed = zlib.compress(raw)
    compressed = len(packed) < len(raw)
    body = packed if compressed else raw
    return b"iTXt", key.encode("latin-1") + b"\0" + struct.pack("BB", int(compressed), 0) + b"\0\0" + body
