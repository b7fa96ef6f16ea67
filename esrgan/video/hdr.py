"""HDR metadata of a clip, kept through an upscale: the mastering display (primaries, white point,
luminance range) and the content light level, read from a decoded frame's side data and written
as the encoder's own parameters (FFmpeg, through PyAV, adds no side data to encoded streams).

PyAV shows the side data only as raw bytes, so the FFmpeg structs are parsed here:
``AVMasteringDisplayMetadata`` (88 bytes: three primaries and the white point as (x, y) rationals,
min and max luminance as rationals, two int flags) and ``AVContentLightMetadata`` (MaxCLL and
MaxFALL, two unsigned ints).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

import av

MASTERING_STRUCT = struct.Struct("=20i2i")  # 10 rationals: (x, y) of R, G, B, white; min, max; 2 flags
LIGHT_STRUCT = struct.Struct("=2I")
# The units x265 counts in (H.265 SEI): chromaticity in 0.00002, luminance in 0.0001 cd/m2.
X265_CHROMA, X265_LUMA = 50000, 10000


@dataclass(frozen=True)
class MasteringDisplay:
    """The display the clip was graded on: CIE 1931 (x, y) of red, green, blue and white, and its
    luminance range in cd/m2 (None where the source does not say)."""

    red: tuple[Fraction, Fraction] | None
    green: tuple[Fraction, Fraction] | None
    blue: tuple[Fraction, Fraction] | None
    white: tuple[Fraction, Fraction] | None
    min_luminance: Fraction | None
    max_luminance: Fraction | None


@dataclass(frozen=True)
class HdrMetadata:
    """What an HDR clip says of its light beside its colour tags (either may be None)."""

    mastering: MasteringDisplay | None = None
    max_cll: tuple[int, int] | None = None  # (MaxCLL, MaxFALL) in cd/m2

    def x265_params(self) -> list[str]:
        """``key=value`` items of x265-params (whole units of 0.00002 and 0.0001 cd/m2)."""
        return self._params("master-display", "max-cll", lambda v: str(round(v * X265_CHROMA)),
                            lambda v: str(round(v * X265_LUMA)))

    def svtav1_params(self) -> list[str]:
        """``key=value`` items of svtav1-params (decimal fractions and cd/m2)."""
        return self._params("mastering-display", "content-light", lambda v: f"{float(v):.5f}",
                            lambda v: f"{float(v):.4f}")

    def _params(self, display: str, light: str, chroma, luma) -> list[str]:
        """Both encoders spell the display as G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min), in their units."""
        items = []
        m = self.mastering
        if m is not None and m.red and m.green and m.blue and m.white and m.max_luminance is not None:
            points = "".join(f"{name}({chroma(p[0])},{chroma(p[1])})"
                             for name, p in (("G", m.green), ("B", m.blue), ("R", m.red), ("WP", m.white)))
            items.append(f"{display}={points}L({luma(m.max_luminance)},{luma(m.min_luminance or 0)})")
        if self.max_cll is not None:
            items.append(f"{light}={self.max_cll[0]},{self.max_cll[1]}")
        return items


def hdr_of(frame: av.VideoFrame) -> HdrMetadata | None:
    """A decoded frame's mastering display and content light level; None when it has neither."""
    mastering = light = None
    for data in frame.side_data:
        raw = bytes(data)
        if data.type == av.sidedata.sidedata.Type.MASTERING_DISPLAY_METADATA and len(raw) >= MASTERING_STRUCT.size:
            mastering = parse_mastering(raw)
        elif data.type == av.sidedata.sidedata.Type.CONTENT_LIGHT_LEVEL and len(raw) >= LIGHT_STRUCT.size:
            light = LIGHT_STRUCT.unpack_from(raw)
    if mastering is None and light is None:
        return None
    return HdrMetadata(mastering, light)


def parse_mastering(raw: bytes) -> MasteringDisplay | None:
    """``AVMasteringDisplayMetadata`` from its bytes (None when it says neither part is set)."""
    values = MASTERING_STRUCT.unpack_from(raw)
    has_primaries, has_luminance = values[-2:]
    if not has_primaries and not has_luminance:
        return None
    rationals = [_fraction(values[i], values[i + 1]) for i in range(0, 20, 2)]
    points = [(rationals[i], rationals[i + 1]) for i in range(0, 8, 2)]
    points = [p if p[0] is not None and p[1] is not None else None for p in points]
    red, green, blue, white = points if has_primaries else (None,) * 4
    low, high = rationals[8:10] if has_luminance else (None, None)
    return MasteringDisplay(red, green, blue, white, low, high)


def _fraction(num: int, den: int) -> Fraction | None:
    return Fraction(num, den) if den else None
