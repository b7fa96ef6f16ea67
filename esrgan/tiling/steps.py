"""Progress below the tile: steps counted after each block of a network's body, cancel polled at each.

A step comes after each block of the network's body (each RRDB of an RRDBNet, each convolution of an
SRVGGNetCompact) and one when a tile is stored, so even a one-tile job reports often; ``cancelled()``
is polled at every step and raises `Cancelled` from inside the forward pass. The steps come from
forward hooks registered once per network; they dispatch to the run of the calling thread only, so a
network shared between threads is never disturbed and its key names never change.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from esrgan.errors import Cancelled
from esrgan.tiling.per_thread import PerThread

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class Steps:
    """Progress of one run in steps; polls ``cancelled`` at every step.

    Args:
        total: Steps of the whole run.
        progress: Called as ``progress(done, total)``.
        cancelled: Polled at every step; True raises `Cancelled`.
    """

    def __init__(self, total: int, progress: ProgressFn | None, cancelled: CancelFn | None) -> None:
        self.total, self.progress, self.cancelled = total, progress, cancelled
        self.done = 0
        self.width = 1  # tiles in the forward pass now running: each block step advances them all
        self.ceiling = 0  # block steps never pass this: the tile's last step is its storing

    def check(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Cancelled("stopped on request")

    def step(self, to: int | None = None) -> None:
        self.check()
        self.done = to if to is not None else min(self.done + self.width, self.ceiling)
        if self.progress is not None:
            self.progress(self.done, self.total)


_CURRENT: PerThread[Steps] = PerThread()  # the Steps of the run on this thread, if any
_BLOCK_COUNTS: weakref.WeakKeyDictionary[torch.nn.Module, int] = weakref.WeakKeyDictionary()
_HOOK_LOCK = threading.Lock()


def counting(steps: Steps) -> AbstractContextManager[Steps]:
    """Let the block hooks of networks run on this thread report to ``steps``."""
    return _CURRENT.bound(steps)


def step_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks after each of which a step is counted: the children of a ``body`` (Sequential or
    ModuleList) that hold convolutions (the RRDBs of an RRDBNet, the convolutions of an
    SRVGGNetCompact); none for a network without such a body (it then reports one step per tile)."""
    body = getattr(model, "body", None)
    if not isinstance(body, (torch.nn.Sequential, torch.nn.ModuleList)):
        return []
    return [block for block in body if any(isinstance(m, torch.nn.Conv2d) for m in block.modules())]


def _after_block(_module: torch.nn.Module, _inputs: object, _output: object) -> None:
    steps = _CURRENT.get()
    if steps is not None:
        steps.step()


def steps_per_tile(model: torch.nn.Module) -> int:
    """Progress steps one tile reports (its blocks, and its storing). Registers the block hooks on
    first use; they do nothing for forward passes outside a tiled run. A wrapper that runs its
    ``network`` several times per forward pass (``passes``: `esrgan.tiling.tta.TTA`) steps after each
    block of each run."""
    runs = int(getattr(model, "passes", 1))
    if runs > 1:
        return (steps_per_tile(model.network) - 1) * runs + 1
    with _HOOK_LOCK:
        if model not in _BLOCK_COUNTS:
            blocks = step_blocks(model)
            for block in blocks:
                block.register_forward_hook(_after_block)
            _BLOCK_COUNTS[model] = len(blocks)
        return _BLOCK_COUNTS[model] + 1
