"""Stateless tiled inference: memory bounded by the tile, tiles that equal the whole image, progress and
cancel below the tile, out-of-memory recovery and resumable work.

`upscale_tiled` plans and runs; `run_plan` runs a `esrgan.tiling.plan.TilePlan` made once by the caller
(who also reads its count and work for estimates). Where the tiles go, and how outputs are put together
(blended or abutting), is the plan's business (`esrgan.tiling.plan`); progress steps are `esrgan.tiling.steps`';
squeeze-excitation means shared by all tiles are `esrgan.tiling.se_sync`'s. The output canvas lives on the
host (or on a GPU with room for it); only one tile (or one batch of same-shape tiles) at a time is on
the device.

Out of memory (`OOM_ERRORS`) while a tile runs, the unfinished tiles are cut to half the size and the
run goes on; finished tiles are kept. Out of memory while tiles go onto the canvas (part of a group may
be there already), the run ends with `ImageTooLargeError` instead.

With a `esrgan.io.resumable.WorkStore`, every finished tile (and every tile's share of the SE
statistics) is kept in it, so the same call after a crash resumes at the first unfinished tile,
with a result equal to an uninterrupted run's (bit for bit on the same machine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.nn import functional as F

from esrgan.errors import ImageTooLargeError
from esrgan.io.resumable import WorkStore
from esrgan.tiling import se_sync
from esrgan.tiling.canvas import Canvas, place, weighted
from esrgan.tiling.memory import return_freed_memory
from esrgan.tiling.plan import (
    Tile,
    TileOptions,
    TilePlan,
    model_context,
    plan_for,
)
from esrgan.tiling.se_passes import NoRoom, SyncedPasses
from esrgan.tiling.steps import CancelFn, ProgressFn, Steps, counting, steps_per_tile

log = logging.getLogger(__name__)

# What a tile too large for the memory left raises: CUDA's error, and the CPU allocator's.
OOM_ERRORS = (torch.OutOfMemoryError, MemoryError)
BeforeForward = Callable[[list[Tile]], None]



@dataclass
class TiledResult:
    """A tiled run's output and the plan it finished with (smaller tiles after an out-of-memory error).

    Attributes:
        image: (H*scale, W*scale, 3) float32 RGB in [0, 1]; uint8 when the run was asked to quantise.
        plan: The plan as it ended.
        resumed: Tiles of the last pass taken from the checkpoint instead of run.
    """

    image: np.ndarray
    plan: TilePlan
    resumed: int = 0


def upscale_tiled(model: torch.nn.Module, image: np.ndarray, *, scale: int, size_multiple: int = 1,
                  options: TileOptions = TileOptions(), **kwargs) -> np.ndarray:
    """Plan the tiles for ``image`` and run ``model`` over them (see `run_plan` for the arguments)."""
    plan = plan_for(image.shape[0], image.shape[1], options, size_multiple, model_context(model))
    return run_plan(model, image, plan, scale=scale, options=options, **kwargs).image


@torch.inference_mode()
def run_plan(
    model: torch.nn.Module,
    image: np.ndarray,
    plan: TilePlan,
    *,
    scale: int,
    options: TileOptions = TileOptions(),
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    progress: ProgressFn | None = None,
    cancelled: CancelFn | None = None,
    checkpoint: WorkStore | None = None,
    before_forward: BeforeForward | None = None,
    quantise: bool = False,
) -> TiledResult:
    """Run ``model`` over ``image`` tile by tile, as ``plan`` cuts it.

    Args:
        model: Maps (N, 3, h, w) float RGB in [0, 1] to (N, 3, h*scale, w*scale); already on
            ``device`` in ``dtype`` and in eval mode. It is only called, never changed (block hooks
            for progress are added once; see `esrgan.tiling.steps.steps_per_tile`).
        image: (H, W, 3) float32 RGB in [0, 1].
        plan: From `esrgan.tiling.plan.plan_for` for this image, model and options.
        scale: The model's native scale.
        options: The batch and the SE synchronisation are read from here.
        device: Where the model runs.
        dtype: The model's dtype (float16 on CUDA, bfloat16 on CPUs with native support).
        channels_last: Feed the model NHWC tensors (when it was converted to channels-last).
        progress: Called as ``progress(done, total)`` in steps (see `esrgan.tiling.steps`), monotonic, the
            last call with ``done == total`` (the total grows when an out-of-memory error re-plans).
        cancelled: Polled at every step, inside the forward pass too; True raises `Cancelled`.
        checkpoint: Keeps finished tiles (and SE sums); opened by the caller with the work's identity.
        before_forward: Called with the tiles of each forward pass before it runs; what it raises
            is raised by the forward pass (``torch.OutOfMemoryError`` is recovered from).
        quantise: Return uint8, made on ``device`` exactly as the encoders round (`esrgan.tiling.canvas`),
            so only bytes cross to the host; bit for bit the float result quantised afterwards.
    """
    run = _Run(model, image, scale, options, torch.device(device), dtype, channels_last, checkpoint, before_forward)
    run.steps = Steps(0, progress, cancelled)
    canvas, plan = run.run(plan, quantise)
    return TiledResult(canvas.result(), plan, run.resumed)


class _Run(SyncedPasses):
    """The parts of one `run_plan` call: the padded input, the forward pass, the progress steps, the
    checkpoint and the out-of-memory recovery."""

    def __init__(self, model, image, scale, options, device, dtype, channels_last, checkpoint, before_forward):
        self.model, self.image, self.scale, self.options = model, image, scale, options
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        self.checkpoint = checkpoint
        self.before_forward = before_forward
        self.forward = getattr(model, "forward_valid", model) if model_context(model) else model
        self.per_tile = steps_per_tile(model)
        self.steps = Steps(0, None, None)
        self.passes_left = 1
        self.resumed = 0
        self.canvas: Canvas | None = None

    def run(self, plan: TilePlan, quantise: bool) -> tuple[Canvas, TilePlan]:
        """Every pass ``plan`` needs, re-planned as out-of-memory errors demand (`each_group`), the
        last filling the canvas. Returns the filled canvas and the plan as it ended."""
        plan = self.resume_plan(plan)
        blocks = se_sync.se_blocks(self.model) if plan.consumes_context and self.options.se_sync == "exact" else []
        means: list[np.ndarray] = []
        keep_states = self.can_keep_states()
        with counting(self.steps):
            while True:
                syncing = bool(blocks) and plan.count > 1
                self._begin(plan, len(blocks) - len(means) + 1 if syncing else 1)
                if syncing and keep_states:
                    canvas = self._canvas(quantise, plan)
                    try:
                        return canvas, self.staged(plan, blocks, means, canvas)
                    except (NoRoom, *OOM_ERRORS) as error:  # recompute instead (the means found are kept)
                        log.info("SE passes recompute their tiles: %s", error or type(error).__name__)
                        keep_states = False
                elif syncing and len(means) < len(blocks):
                    plan, mean = self.collect(plan, blocks, means)
                    means.append(mean)
                else:
                    canvas = self._canvas(quantise, plan)  # one SE tile split in several: SE passes first
                    plan, finished = self.final(plan, blocks if syncing else [], means, canvas,
                                                until_split=bool(blocks) and not syncing)
                    if finished:
                        return canvas, plan

    def _begin(self, plan: TilePlan, passes: int) -> None:
        """A pass over ``plan`` begins (``passes``: it and those left after it)."""
        self.passes_left = passes
        self.steps.total = self.steps.done + plan.count * self.per_tile * passes
        self.canvas = None  # set by the last pass (`expect`); never an earlier attempt's canvas

    def _canvas(self, quantise: bool, plan: TilePlan) -> Canvas:
        return Canvas(*(side * self.scale for side in self.image.shape[:2]), self.device, quantise, plan.blend)

    def resume_plan(self, plan: TilePlan) -> TilePlan:
        """The plan a checkpointed run was following (it may have been re-planned), else ``plan``."""
        if self.checkpoint is not None and self.checkpoint.has("plan"):
            plan = TilePlan.from_dict(self.checkpoint.load_json("plan"))
        self._keep_plan(plan)
        x = torch.from_numpy(np.ascontiguousarray(self.image.transpose(2, 0, 1)))[None]
        border = getattr(self.model, "border", "reflect")  # waifu2x replicates its border, Real-CUGAN reflects
        self.input = _pad(x, plan.top, plan.bottom, plan.left, plan.right, border)
        return plan

    def _keep_plan(self, plan: TilePlan) -> None:
        if self.checkpoint is not None:
            self.checkpoint.save_json("plan", plan.as_dict())

    def patches(self, group: list[Tile]) -> torch.Tensor:
        if self.before_forward is not None:
            self.before_forward(group)
        x = self.input
        patches = torch.cat([x[:, :, t.window[0] : t.window[1], t.window[2] : t.window[3]] for t in group])
        patches = patches.to(device=self.device, dtype=self.dtype, non_blocking=True)
        if self.channels_last:
            patches = patches.contiguous(memory_format=torch.channels_last)
        return patches

    def each_group(self, plan: TilePlan, work: Callable[[list[Tile]], None], halving: bool = True,
                   until_split: bool = False) -> tuple[TilePlan, bool]:
        """Call ``work`` on consecutive groups of same-shape tiles, stepping the progress after each;
        out of memory, cut the unfinished tiles to half the size and go on (with ``halving``, else
        raise; with ``until_split``, stop there). Returns the plan as it ended, and whether every
        tile was done."""
        base, i = self.steps.done, 0
        while i < plan.count:
            group = _group(plan.tiles, i, self.options.batch)
            self.steps.width = len(group)
            self.steps.ceiling = base + (i + len(group)) * self.per_tile - len(group)
            try:
                work(group)
            except OOM_ERRORS as error:
                if not halving:
                    raise
                plan = self._halve(plan, i, error)
                if until_split:
                    return plan, False
                if self.canvas is not None:  # blended bytes wait for the tiles that now come
                    self.canvas.expect([place(t, plan, self.scale) for t in plan.tiles[i:]])
                self.steps.total = base + plan.count * self.per_tile * self.passes_left
                continue
            i += len(group)
            self.steps.step(to=base + i * self.per_tile)
            if self.device.type == "cpu":
                return_freed_memory()
        return plan, True

    def _halve(self, plan: TilePlan, first: int, error: BaseException) -> TilePlan:
        core = plan.tiles[first].core
        side = plan.tile or max(core[1] - core[0], core[3] - core[2])
        try:
            smaller = plan.split(list(plan.tiles[first:]), side // 2)
        except ValueError:
            raise error from None
        log.warning("out of memory with %d px tiles: going on with %d px tiles", side, smaller.tile)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._keep_plan(smaller)
        return smaller

    def final(self, plan: TilePlan, blocks, means: list[np.ndarray], canvas: Canvas,
              until_split: bool = False) -> tuple[TilePlan, bool]:
        """The last pass: every tile through the whole network, stored (or taken from the checkpoint);
        with ``until_split``, it stops where out of memory cut the tiles smaller. Returns the plan
        as it ended, and whether the canvas is full."""
        self.expect(plan, canvas)

        def work(group: list[Tile]) -> None:
            if self.checkpoint is not None and all(self.checkpoint.has(canvas.unit(t.key)) for t in group):
                with _putting():
                    for t in group:
                        canvas.put(self.checkpoint.load_array(canvas.unit(t.key)), place(t, plan, self.scale))
                self.resumed += len(group)
                return
            with se_sync.syncing(se_sync.SyncState(blocks, means)):
                outputs = self.forward(self.patches(group))
            self._store(group, outputs, plan, canvas)

        return self.each_group(plan, work, until_split=until_split)

    def expect(self, plan: TilePlan, canvas: Canvas) -> None:
        """The last pass begins: ``canvas`` takes every tile of ``plan``."""
        self.canvas = canvas
        canvas.expect([place(t, plan, self.scale) for t in plan.tiles])

    def _store(self, group: list[Tile], outputs: torch.Tensor, plan: TilePlan, canvas: Canvas) -> None:
        outputs = canvas.outputs(outputs)  # out of memory here, nothing is on the canvas yet: smaller tiles help
        with _putting():
            for t, out in zip(group, outputs, strict=True):
                keep = None if self.checkpoint is None else partial(self.checkpoint.save_array, canvas.unit(t.key))
                canvas.put(weighted(out, t, plan, self.scale), place(t, plan, self.scale), keep)


@contextmanager
def _putting():
    """Out of memory while tiles go onto the canvas, part of a group may be there already: halving
    and running the group again would add it twice. The canvas's own memory (band sums, copies) does
    not shrink with the tile either, so the run ends with a typed error instead."""
    try:
        yield
    except OOM_ERRORS as error:
        raise ImageTooLargeError(f"out of memory while putting the result together ({error or type(error).__name__}): "
                                 "choose a smaller scale or a smaller image") from error


def _group(tiles: tuple[Tile, ...], first: int, size: int) -> list[Tile]:
    """Consecutive tiles from ``first`` whose windows have the same shape, at most ``size``."""
    group = [tiles[first]]
    for t in tiles[first + 1 : first + size]:
        if t.shape != group[0].shape:
            break
        group.append(t)
    return group


def _pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, border: str = "reflect") -> torch.Tensor:
    """Pad once, as the model's upstream does: reflect (where the image is large enough, else
    replicate) or replicate."""
    if not (top or bottom or left or right):
        return x
    height, width = x.shape[-2:]
    fits = max(top, bottom) < height and max(left, right) < width
    mode = "reflect" if border == "reflect" and fits else "replicate"
    return F.pad(x, (left, right, top, bottom), mode=mode)
