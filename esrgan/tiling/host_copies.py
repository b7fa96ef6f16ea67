"""Tile bytes from a CUDA device to a host canvas, each copy overlapping the next tile's compute.

Each tile's uint8 region is copied by a ``non_blocking`` copy into pinned host memory on a side
stream (which first waits for the compute stream, so it copies finished bytes), and an event is
recorded after it. A region is placed in the canvas only once its event has completed: when the
next region arrives and the event says so, or at the latest in `HostCopies.settle`. The compute
stream meanwhile runs the next tile.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import torch

MAX_PENDING = 8  # copies in flight at most (their pinned buffers): the oldest is waited for beyond
Keep = Callable[[np.ndarray], None]


class HostCopies:
    """Copies of uint8 regions from ``device`` into ``canvas``, an (H, W, 3) uint8 numpy array."""

    def __init__(self, canvas: np.ndarray, device: torch.device) -> None:
        self.canvas, self.device = canvas, device
        self.stream = torch.cuda.Stream(device)
        self.pending: deque[tuple[torch.cuda.Event, torch.Tensor, tuple[int, int, int, int], Keep | None]] = deque()

    def push(self, region: torch.Tensor, where: tuple[int, int, int, int], keep: Keep | None = None) -> None:
        """Start copying ``region`` (h, w, 3) uint8 on the device to ``where`` = (y0, y1, x0, x1) in
        the canvas; ``keep`` is called with the bytes on the host once they are there."""
        region = region.contiguous()  # on the compute stream, like the bytes it holds
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            host = torch.empty(region.shape, dtype=region.dtype, pin_memory=True)
            host.copy_(region, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        region.record_stream(self.stream)  # its memory is not reused before the copy has read it
        self._place_finished()
        self.pending.append((done, host, where, keep))
        while len(self.pending) > MAX_PENDING:
            self._place_oldest()

    def settle(self) -> None:
        """Wait for every copy in flight and place its bytes."""
        while self.pending:
            self._place_oldest()

    def _place_finished(self) -> None:
        while self.pending and self.pending[0][0].query():
            self._place_oldest()

    def _place_oldest(self) -> None:
        done, host, (y0, y1, x0, x1), keep = self.pending.popleft()
        done.synchronize()
        region = host.numpy()
        self.canvas[y0:y1, x0:x1] = region
        if keep is not None:
            keep(region)
