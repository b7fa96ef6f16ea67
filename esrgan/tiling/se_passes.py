"""The squeeze-excitation passes of a tiled run (`esrgan.tiling.se_sync` says what they compute): mixed into
`esrgan.tiling.run`'s run, which supplies the tiles, the forward pass, the progress and the checkpoint.

Two ways to the same means: recomputing (`SyncedPasses.collect`, one pass per SE block, each from the
input up to that block; memory of one tile) and keeping states (`SyncedPasses.staged`, for networks
with ``se_stages``: each pass runs only the next stage; the tiles' states wait on the host). The
second is chosen while the states fit in `RAM_SHARE` of the RAM available.
"""

from __future__ import annotations

import numpy as np
import torch

from esrgan.tiling import se_sync
from esrgan.tiling.plan import Tile, TilePlan, model_context
from esrgan.tiling.tile_size import RAM_SHARE, available_ram


class NoRoom(Exception):  # noqa: N818 - control flow
    """The tiles' states between SE passes would not fit in memory."""


class SyncedPasses:
    """The SE passes, as methods of a tiled run (see `esrgan.tiling.run`), which provides these and
    ``patches``, ``each_group``, ``expect`` and ``_store``."""

    model: torch.nn.Module
    forward: object
    device: torch.device
    dtype: torch.dtype
    checkpoint: object

    def collect(self, plan: TilePlan, blocks, means: list[np.ndarray]) -> tuple[TilePlan, np.ndarray]:
        """One pass: every tile's share of SE block ``len(means)``'s sums; returns its global mean."""
        k = len(means)
        ratios = se_sync.ratios(self.model, self.forward, plan.tile_pad, plan.multiple, self.device, self.dtype)
        bounds = bounds_of(plan)
        total: list[np.ndarray] = []

        def work(group: list[Tile]) -> None:
            names = [f"se{k}-{t.key}" for t in group]
            if self.checkpoint is not None and all(self.checkpoint.has(n) for n in names):
                total.extend(self.checkpoint.load_array(n) for n in names)
                return
            cores = [se_sync.core_flags(t.core, bounds) for t in group]
            state = se_sync.SyncState(blocks, means, [k], cores, ratios)
            with se_sync.syncing(state):
                try:
                    self.forward(self.patches(group))
                except se_sync.StopPass:
                    pass
            self._keep_sums(names, state.collected[k], total)

        plan, _ = self.each_group(plan, work)
        return plan, _mean(total)

    def _keep_sums(self, names: list[str], sums: list[np.ndarray], total: list[np.ndarray]) -> None:
        if self.checkpoint is not None:
            for name, value in zip(names, sums, strict=True):
                self.checkpoint.save_array(name, value)
        total.extend(sums)

    def can_keep_states(self) -> bool:
        """Whether the SE passes may keep each tile's state instead of recomputing it: the network
        can be cut at its SE blocks, and no checkpoint holds parts of a recomputing run."""
        if not hasattr(self.model, "se_stages") or not model_context(self.model):
            return False
        return self.checkpoint is None or not any(n.startswith(("se", "tile-")) for n in self.checkpoint.names())

    def staged(self, plan: TilePlan, blocks, means: list[np.ndarray], canvas) -> TilePlan:
        """Every SE pass and the last, each running only the network's next stage on every tile
        (`se_sync` ``se_stages``), the tiles' states kept on the host in between.

        Raises:
            NoRoom: The states would take more than half the RAM available.
        """
        stages = self.model.se_stages
        ratios = se_sync.ratios(self.model, self.forward, plan.tile_pad, plan.multiple, self.device, self.dtype)
        bounds = bounds_of(plan)
        held: dict[Tile, tuple] = {}
        self.expect(plan, canvas)
        for k in range(len(blocks) + 1):
            total: list[np.ndarray] = []

            def work(group: list[Tile], k: int = k, total: list[np.ndarray] = total) -> None:
                with se_sync.syncing(se_sync.SyncState(blocks, means)):
                    if k == 0:
                        state, feature = stages[0](self.patches(group))
                    else:
                        state, feature = stages[k](*_moved(held.pop(group[0]), self.device))
                if k == len(blocks):
                    self._store(group, feature, plan, canvas)
                    return
                cores = [se_sync.core_flags(t.core, bounds) for t in group]
                sums = [se_sync.owned_sums(feature[n], ratios[k], core) for n, core in enumerate(cores)]
                self._keep_sums([f"se{k}-{t.key}" for t in group], sums, total)
                held[group[0]] = _moved((state, feature), torch.device("cpu"))
                if group[0] == plan.tiles[0]:  # each pass's states may be larger than the last's
                    self._check_room(held[group[0]], plan)

            self.each_group(plan, work, halving=False)
            if k < len(blocks):
                means.append(_mean(total))
        return plan

    def _check_room(self, held: tuple, plan: TilePlan) -> None:
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in _tensors(held)}
        size = sum(storages.values()) * plan.count  # views keep their whole storage alive
        if size > RAM_SHARE * available_ram():
            raise NoRoom(f"{size / 2**20:.0f} MB of tile states")


def bounds_of(plan: TilePlan) -> tuple[int, int, int, int]:
    cores = [t.core for t in plan.tiles]
    return (min(c[0] for c in cores), max(c[1] for c in cores), min(c[2] for c in cores), max(c[3] for c in cores))


def _mean(sums: list[np.ndarray]) -> np.ndarray:
    summed = np.sum(sums, axis=0)  # in tile order: the same bits when resumed
    return summed[:-1] / summed[-1]


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for part in (value or ()) for t in _tensors(part)]


def _moved(value, device: torch.device):
    """``value`` (tensors in nested tuples) on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return None if value is None else tuple(_moved(part, device) for part in value)
