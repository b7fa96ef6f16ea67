"""Blended tile outputs summed a band of rows at a time, each band quantised once it is complete.

Where tiles blend, an output pixel near a seam is the sum of up to four tiles' weighted outputs. The
float sums are kept only for bands of `STRIP_ROWS` output rows that tiles still to come add to: a
band is created at its first contribution, and quantised (`esrgan.tiling.canvas.quantise_`) and dropped
at its last, which the count of tiles still to come over it says. Tiles run in rows, so the bands
alive at any moment are about one row of tiles, not the whole output. The sums are made in the
order the whole float canvas would make them, from the same zeros: the bytes are the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

STRIP_ROWS = 32
Place = tuple[int, int, int, int]


def quantise_(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Pixels in [0, 1] (any float dtype; clamped here) as uint8, rounded as the encoders round
    (`esrgan.io.imageio.to_uint8`: ``x * 255 + 0.5`` in float32, floored). A multiply and then an add,
    never fused, so the bytes equal quantising the float result afterwards, bit for bit. A float32
    ``x`` is overwritten on the way (no second float copy). A numpy array is done by numpy: a band
    of rows is too small for torch's threads to pay (on a busy machine each parallel op waited
    ~8 ms for a descheduled partner thread)."""
    if isinstance(x, np.ndarray):
        np.clip(x, 0, 1, out=x)
        x *= np.float32(255.0)
        x += np.float32(0.5)
        return x.astype(np.uint8)
    return x.float().clamp_(0, 1).mul_(255.0).add_(0.5).to(torch.uint8)


class Strips:
    """Float sums of blended regions by band of rows, handed to ``put_bytes(bytes, place)`` when done.

    Args:
        height, width: The output.
        put_bytes: Takes a finished band's (rows, width, 3) uint8 and its place.
        device: Where the sums live unless ``on_host``.
        on_host: The regions come as numpy arrays (the sums are numpy too).
    """

    def __init__(self, height: int, width: int, put_bytes: Callable[[object, Place], None],
                 device: torch.device, on_host: bool) -> None:
        self.height, self.width, self.put_bytes = height, width, put_bytes
        self.device, self.on_host = device, on_host
        self.sums: dict[int, np.ndarray | torch.Tensor] = {}
        self.left: dict[int, int] = {}
        self.done: set[int] = set()

    def expect(self, places: list[Place]) -> None:
        """The places of every tile still to come (all of them, or the rest after a re-plan)."""
        self.left = {}
        for place in places:
            for k in _bands(place):
                self.left[k] = self.left.get(k, 0) + 1
        for k in [k for k in self.sums if not self.left.get(k)]:
            self._finish(k)

    def add(self, region, place: Place) -> None:
        """Add one tile's weighted (h, w, 3) float32 region at ``place`` = (y0, y1, x0, x1)."""
        y0, _, x0, x1 = place
        if isinstance(region, np.ndarray) and not self.on_host:
            region = torch.from_numpy(region).to(self.device)
        for k in _bands(place):
            if k in self.done:
                raise RuntimeError(f"rows {k * STRIP_ROWS}+ were quantised before a tile added to them")
            top = k * STRIP_ROWS
            band = self.sums.get(k)
            if band is None:
                band = self.sums[k] = self._zeros(min(STRIP_ROWS, self.height - top))
            a, b = max(y0, top), min(place[1], top + len(band))
            band[a - top : b - top, x0:x1] += region[a - y0 : b - y0]
            if k in self.left:  # counted: the band is done with its last tile
                self.left[k] -= 1
                if self.left[k] <= 0:
                    self._finish(k)

    def flush(self) -> None:
        """Quantise every band still held (none is, after the last tile of a complete run)."""
        for k in list(self.sums):
            self._finish(k)

    def _finish(self, k: int) -> None:
        band = self.sums.pop(k)
        top = k * STRIP_ROWS
        self.put_bytes(quantise_(band), (top, top + len(band), 0, self.width))
        self.done.add(k)

    def _zeros(self, rows: int):
        if self.on_host:
            return np.zeros((rows, self.width, 3), np.float32)
        return torch.zeros((rows, self.width, 3), dtype=torch.float32, device=self.device)


def _bands(place: Place) -> range:
    y0, y1, x0, x1 = place
    if y0 >= y1 or x0 >= x1:
        return range(0)
    return range(y0 // STRIP_ROWS, (y1 - 1) // STRIP_ROWS + 1)
