"""Figures rounded for people (pages, JSON, messages): real work never reads as zero.

A fast CPU (or a tiny image) makes an estimate of a few hundredths of a second, which rounding to
tenths shows as "0.0 s", as if the work were free; a small limit in millions of pixels shows as
"0.0 M". Every figure rounded for display goes through here.
"""

from __future__ import annotations

MIN_SECONDS = 0.1  # the least an estimate of real work shows


def seconds(value: float | None) -> float | None:
    """Seconds to a tenth; anything above zero shows as at least `MIN_SECONDS` (None stays None)."""
    if value is None:
        return None
    return max(MIN_SECONDS, round(value, 1)) if value > 0 else 0.0


def megapixels(pixels: float) -> str:
    """Millions of pixels for a message: a tenth above a million, else two significant digits, so a
    limit of 10,000 pixels reads "0.01", never "0.0"."""
    return f"{pixels / 1e6:.1f}" if pixels >= 1e6 else f"{pixels / 1e6:.2g}"
