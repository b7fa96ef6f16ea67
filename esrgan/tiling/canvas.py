"""Putting tile outputs together: the output canvas, the blending ramps, where each tile's part goes.

The result is float32 in [0, 1], or (`Canvas` with ``quantise``) uint8 made where the network ran,
rounded exactly as the encoders round (`quantise_`), so only bytes leave the device. Where tiles
abut (``plan.blend == 0``) every output pixel comes from one tile and each tile is quantised as it
comes; where they blend, float sums are kept for bands of `STRIP_ROWS` output rows only while tiles
still to come add to them (`Strips`), then quantised: no float canvas of the whole output exists.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from esrgan.tiling.host_copies import HostCopies
from esrgan.tiling.plan import Tile, TilePlan
from esrgan.tiling.strips import Strips, quantise_

# A result from a GPU canvas is copied into pinned memory up to this size (1024x1024 at 4x is 50 MB).
# torch keeps freed pinned blocks for reuse, rounded up to a power of two, so a long-lived worker
# would otherwise hold about twice its largest result page-locked; larger results use plain memory.
PINNED_RESULT_BYTES = 64 * 2**20


def new_canvas(height: int, width: int, device: torch.device,
               dtype: torch.dtype = torch.float32) -> np.ndarray | torch.Tensor:
    """The (H, W, 3) output canvas, zeros: on the GPU when it takes at most a quarter of the free
    GPU memory (tiles are stored there, and the result crosses to the host once), else on the host."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if height * width * 3 * dtype.itemsize <= free // 4:
            return torch.zeros((height, width, 3), dtype=dtype, device=device)
    return np.zeros((height, width, 3), dtype=np.uint8 if dtype == torch.uint8 else np.float32)


class Canvas:
    """The (H, W, 3) result of a tiled run, put together tile by tile.

    Args:
        height, width: The output's size.
        device: Where the network runs: the canvas is there when it fits (`new_canvas`).
        quantise: Make the result uint8 (`quantise_`) instead of float32 in [0, 1].
        blend: The plan's blending half-width: 0 when tiles abut.
    """

    def __init__(self, height: int, width: int, device: torch.device, quantise: bool, blend: int) -> None:
        self.quantise = quantise
        self.per_tile = quantise and not blend  # every tile's bytes are final as they come
        self.array = new_canvas(height, width, device, torch.uint8 if quantise else torch.float32)
        on_host = isinstance(self.array, np.ndarray)
        self.copies = HostCopies(self.array, device) if quantise and on_host and device.type == "cuda" else None
        self.to_host = on_host and self.copies is None  # tile outputs cross to the host as they come
        self.strips = Strips(height, width, self._put_bytes, device, self.to_host) if quantise and blend else None

    def expect(self, places: list[tuple[int, int, int, int]]) -> None:
        """Where the tiles still to come go (`place`), at the start of the last pass and after a
        re-plan: blended bytes are made once no tile still to come adds to their rows."""
        if self.strips is not None:
            self.strips.expect(places)

    def unit(self, key: str) -> str:
        """A tile's checkpoint unit name: the bytes and the float regions are never mixed."""
        return f"{key}.u8" if self.per_tile else key

    def outputs(self, outputs: torch.Tensor) -> torch.Tensor | np.ndarray:
        """A forward pass's (N, 3, h, w) outputs as this canvas takes them: clamped float32 (uint8
        when tiles are quantised one by one), on the host where they go there one by one."""
        outputs = quantise_(outputs) if self.per_tile else outputs.float().clamp_(0, 1)
        return outputs.cpu().numpy() if self.to_host else outputs

    def put(self, region, where: tuple[int, int, int, int], keep: Callable[[np.ndarray], None] | None = None) -> None:
        """Add a tile's weighted region (`weighted`; or one loaded from a checkpoint) at ``where``
        (`place`); ``keep`` is called with it on the host (the checkpoint), once it is there."""
        if self.strips is not None:
            self.strips.add(region, where)
        elif self.copies is not None and isinstance(region, torch.Tensor):
            self.copies.push(region, where, keep)
            return
        else:
            add(self.array, region, where)
        if keep is not None:
            keep(as_numpy(region))

    def _put_bytes(self, region, where: tuple[int, int, int, int]) -> None:
        if self.copies is not None and isinstance(region, torch.Tensor):
            self.copies.push(region, where)
        else:
            add(self.array, region, where)

    def result(self) -> np.ndarray:
        """The finished (H, W, 3) result on the host: float32, or uint8 with ``quantise`` (in
        pinned memory when it comes from a GPU and is at most `PINNED_RESULT_BYTES`)."""
        if self.strips is not None:
            self.strips.flush()
        if self.copies is not None:
            self.copies.settle()
        array = self.array
        if isinstance(array, np.ndarray):
            return array
        if array.dtype != torch.uint8 or array.nbytes > PINNED_RESULT_BYTES:
            return array.cpu().numpy()
        host = torch.empty(array.shape, dtype=array.dtype, pin_memory=True)
        return host.copy_(array).numpy()


def _ramp(start: int, stop: int, lo: int, hi: int, blend: int, scale: int) -> tuple[int, int, np.ndarray]:
    """Output span and weights along one axis for a core [start, stop) within [lo, hi)."""
    a = start - blend if start > lo else start
    b = stop + blend if stop < hi else stop
    n = (b - a) * scale
    weights = np.ones(n, dtype=np.float32)
    band = 2 * blend * scale
    if band and start > lo:
        weights[:band] = (np.arange(band, dtype=np.float32) + 0.5) / band
    if band and stop < hi:
        weights[n - band :] = (np.arange(band, 0, -1, dtype=np.float32) - 0.5) / band
    return a, b, weights


def weighted(out: np.ndarray | torch.Tensor, t: Tile, plan: TilePlan, scale: int):
    """The part of one tile's (3, h, w) output that goes onto the canvas, as (h', w', 3), weighted by
    its blending ramps and cut to the image (see `place` for where)."""
    s = scale
    padded_h, padded_w = plan.padded_size
    oy, ox = plan.output_origin(t)
    ya, yb, wy = _ramp(t.core[0], t.core[1], 0, padded_h, plan.blend, s)
    xa, xb, wx = _ramp(t.core[2], t.core[3], 0, padded_w, plan.blend, s)
    region = out[:, (ya - oy) * s : (yb - oy) * s, (xa - ox) * s : (xb - ox) * s]
    region = region.permute(1, 2, 0) if isinstance(region, torch.Tensor) else region.transpose(1, 2, 0)
    if plan.blend:
        if isinstance(region, torch.Tensor):
            wy, wx = torch.from_numpy(wy).to(region.device), torch.from_numpy(wx).to(region.device)
        region = region * wy[:, None, None] * wx[None, :, None]
    (y0, y1, x0, x1), top, left = place(t, plan, s), (ya - plan.top) * s, (xa - plan.left) * s
    return region[y0 - top : y1 - top, x0 - left : x1 - left]


def place(t: Tile, plan: TilePlan, scale: int) -> tuple[int, int, int, int]:
    """Where on the (H*scale, W*scale) canvas a tile's weighted region goes."""
    s, padded_h, padded_w = scale, *plan.padded_size
    ya, yb, _ = _ramp(t.core[0], t.core[1], 0, padded_h, plan.blend, 1)
    xa, xb, _ = _ramp(t.core[2], t.core[3], 0, padded_w, plan.blend, 1)
    top, left = (ya - plan.top) * s, (xa - plan.left) * s
    return (max(top, 0), min((yb - plan.top) * s, plan.height * s),
            max(left, 0), min((xb - plan.left) * s, plan.width * s))


def add(canvas: np.ndarray | torch.Tensor, region, place: tuple[int, int, int, int]) -> None:
    y0, y1, x0, x1 = place
    if y0 >= y1 or x0 >= x1:
        return
    if isinstance(canvas, torch.Tensor) and isinstance(region, np.ndarray):
        region = torch.from_numpy(region).to(canvas.device)
    if canvas.dtype in (np.uint8, torch.uint8):  # bytes: tiles abut, each pixel is written once
        canvas[y0:y1, x0:x1] = region
    else:
        canvas[y0:y1, x0:x1] += region


def as_numpy(region) -> np.ndarray:
    return region.cpu().numpy() if isinstance(region, torch.Tensor) else np.ascontiguousarray(region)
