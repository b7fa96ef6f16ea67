"""Squeeze-excitation means over the whole image, for tiled runs (upstream's "syncgap").

A squeeze-excitation (SE) block scales its input's channels by a function of their means over the
whole feature map. Run tile by tile, each tile would average only what it sees, and a tiled result
drifts from the whole image's (40 dB for Real-CUGAN at 112 px tiles). realcugan-ncnn-vulkan's
``-c 1`` and bilibili's cache mode compute each mean over all tiles before the next stage; so do we,
exactly ("exact"): pass k runs every tile up to SE block k (with the means of blocks 0..k-1 already
global) and adds up the part of that block's input the tile owns; the k-th global mean is then the
sum over all tiles divided by the size of the whole image's feature map. A last pass runs every tile
through with all means known. Memory stays that of one tile (nothing is kept but sums: each pass
recomputes). A network that can be cut at its SE blocks (``se_stages``) is not recomputed: each tile's
state between the blocks is kept on the host while it fits in half the RAM available, and every pass
runs only the next part of the network (`esrgan.tiling.run`).

The interface for a network (Real-CUGAN, waifu2x CUnet ...):

* ``se_blocks``: its SE modules, in the order its forward pass reaches them;
* each of them takes its mean through `channel_mean` (``channel_mean(self, x)`` in its forward);
* it consumes its context (``prepadding`` and ``forward_valid``, see `esrgan.tiling.plan`), so a tile's
  feature maps are exact crops of the whole image's, and every map position has one owner;
* optionally ``se_stages``: its ``forward_valid`` cut before each SE block, ``stage0(x) -> (state,
  input of block 0)``, ``stage_k(state, input of block k-1) -> (state, input of block k)`` (applying
  block k-1 first), the last returning ``(None, output)``; then no pass recomputes another's work.

Outside a synced run `channel_mean` is the ordinary mean, so such a network runs anywhere as before.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from fractions import Fraction

import numpy as np
import torch

from esrgan.tiling.per_thread import PerThread

_RATIOS: weakref.WeakKeyDictionary[torch.nn.Module, list[Fraction]] = weakref.WeakKeyDictionary()
_RATIOS_LOCK = threading.Lock()


Core = tuple[int, int, bool, bool, bool, bool]  # a tile's core: height, width, at top, bottom, left, right


class StopPass(Exception):  # noqa: N818 - control flow, not an error
    """Ends a tile's forward pass at the block whose statistics are being collected."""


def se_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The network's SE blocks in forward order (its ``se_blocks``), or none."""
    return list(getattr(model, "se_blocks", []) or [])


def _own_mean(x: torch.Tensor) -> torch.Tensor:
    if x.dtype in (torch.float16, torch.bfloat16):  # accumulate in float32, as upstream does for half
        return torch.mean(x.float(), dim=(2, 3), keepdim=True).to(x.dtype)
    return torch.mean(x, dim=(2, 3), keepdim=True)


class SyncState:
    """What the SE blocks of one forward pass should do.

    Args:
        blocks: The network's SE blocks, in order.
        means: Global means of the first ``len(means)`` blocks, each (C,) float64.
        collect: The blocks whose owned sums this pass collects; the pass stops after the last of
            them (blocks collected before it use the tile's own means).
        cores: Per batch element, (core height, core width, at top, at bottom, at left, at right).
        ratios: Per block, its feature map's size per input pixel (see `ratios`).
    """

    def __init__(self, blocks: Sequence[torch.nn.Module], means: Sequence[np.ndarray],
                 collect: Sequence[int] = (), cores: Sequence[Core] = (),
                 ratios: Sequence[Fraction] = ()) -> None:
        self.index = {id(b): k for k, b in enumerate(blocks)}
        self.means, self.collect, self.cores, self.ratios = list(means), set(collect), list(cores), list(ratios)
        # block -> per batch element: its C owned sums, then the owned count
        self.collected: dict[int, list[np.ndarray]] = {}
        self.shapes: dict[int, tuple[int, int]] = {}  # block -> its input's (h, w), when probing

    def knows(self, block: torch.nn.Module) -> bool:
        """Whether ``block`` is one of this run's SE blocks (else it takes its own mean)."""
        return id(block) in self.index

    def mean(self, block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        k = self.index.get(id(block))
        if k is None:
            return _own_mean(x)
        self.shapes[k] = tuple(x.shape[-2:])
        if k < len(self.means):
            return torch.from_numpy(self.means[k]).to(x.device, x.dtype).view(1, -1, 1, 1)
        if k in self.collect:
            self.collected[k] = [owned_sums(x[n], self.ratios[k], core) for n, core in enumerate(self.cores)]
            if k == max(self.collect):
                raise StopPass
        return _own_mean(x)


_CURRENT: PerThread[SyncState] = PerThread()  # the SyncState of the tiled run on this thread, if any


def owned_sums(x: torch.Tensor, ratio: Fraction, core: Core) -> np.ndarray:
    """A tile's share of an SE block's input ``x`` (C, h, w): the sums over the part it owns, per
    channel in float64, then that part's size."""
    height, width, top, bottom, left, right = core
    ys = _owned(x.shape[-2], height, ratio, top, bottom)
    xs = _owned(x.shape[-1], width, ratio, left, right)
    part = x[:, ys[0] : ys[1], xs[0] : xs[1]].double()
    return np.append(part.sum(dim=(1, 2)).cpu().numpy(), float((ys[1] - ys[0]) * (xs[1] - xs[0])))


def _owned(length: int, core: int, ratio: Fraction, first: bool, last: bool) -> tuple[int, int]:
    """The span of a tile's feature map (``length`` long) that it owns: the core's band, centred in
    the context the valid convolutions left, out to the map's ends at the image's edges. Neighbours
    cut at the same place (the margin is the same for every tile), so the spans partition the map."""
    margin = (length - core * ratio) / 2
    lo = 0 if first else int(margin)
    hi = length if last else int(margin + core * ratio)
    if not 0 <= lo <= hi <= length or margin < 0:
        raise RuntimeError(f"a feature map of {length} cannot hold a core of {core} at {ratio}")
    return lo, hi


def channel_mean(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The (N, C, 1, 1) channel means an SE block should use for its input ``x`` (N, C, H, W): its
    own, or in a synced tiled run the whole image's (and at the block being collected, the pass stops)."""
    state = _CURRENT.get()
    return _own_mean(x) if state is None else state.mean(block, x)


def current() -> SyncState | None:
    """The state of the synced tiled run on this thread, if any (for networks that are not torch
    modules all through, such as `esrgan.runtime.ncnn_backend`'s)."""
    return _CURRENT.get()


def syncing(state: SyncState) -> AbstractContextManager[SyncState]:
    """Let the SE blocks of forward passes on this thread follow ``state``."""
    return _CURRENT.bound(state)


def ratios(model: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], context: int,
           multiple: int, device: torch.device | str, dtype: torch.dtype) -> list[Fraction]:
    """Each SE block's feature-map size per input pixel (1/2 after one 2x2 downsampling, 3/2 inside a
    3x network's second U-Net ...), measured once per network on two small probes."""
    with _RATIOS_LOCK:
        if model not in _RATIOS:
            blocks = se_blocks(model)
            sizes = (2 * multiple, 4 * multiple)
            seen = []
            for size in sizes:
                state = SyncState(blocks, [])
                side = size + 2 * context
                with syncing(state), torch.inference_mode():
                    forward(torch.zeros(1, 3, side, side, device=device, dtype=dtype))
                seen.append(state.shapes)
            _RATIOS[model] = [Fraction(seen[1][k][0] - seen[0][k][0], sizes[1] - sizes[0])
                              for k in range(len(blocks))]
        return _RATIOS[model]


def core_flags(core: tuple[int, int, int, int], bounds: tuple[int, int, int, int]) -> Core:
    """What `SyncState` needs of a tile's core: its size and which image edges it touches, given the
    bounds (y0, y1, x0, x1) of all cores."""
    y0, y1, x0, x1 = core
    return y1 - y0, x1 - x0, y0 == bounds[0], y1 == bounds[1], x0 == bounds[2], x1 == bounds[3]
