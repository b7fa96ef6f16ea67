"""Putting tile outputs together: the output canvas, the blending ramps, where each tile's part goes."""

from __future__ import annotations

import numpy as np
import torch

from esrgan.tileplan import Tile, TilePlan


def new_canvas(height: int, width: int, device: torch.device) -> np.ndarray | torch.Tensor:
    """The (H, W, 3) float32 output canvas: on the GPU when it takes at most a quarter of the free
    GPU memory (tiles are stored there, and the result crosses to the host once), else on the host."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if height * width * 3 * 4 <= free // 4:
            return torch.zeros((height, width, 3), dtype=torch.float32, device=device)
    return np.zeros((height, width, 3), dtype=np.float32)


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
    canvas[y0:y1, x0:x1] += region


def as_numpy(region) -> np.ndarray:
    return region.cpu().numpy() if isinstance(region, torch.Tensor) else np.ascontiguousarray(region)
