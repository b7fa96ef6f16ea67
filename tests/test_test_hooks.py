"""The engine's test hooks do what tests rely on: slow work slow on purpose (a floor, never a
ceiling), and an out-of-memory error at a chosen tile, once."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from esrgan.tiling.run import TileOptions, count_tiles, model_context, plan_for, run_plan, steps_per_tile

WORK_S = 0.02  # what each block of `Sleepy` takes, whatever the machine


class Sleepy(nn.Module):
    """A 1x network of two blocks, each taking a known time (a progress step after each)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(*(nn.Sequential(nn.Conv2d(3, 3, 1), _Sleep()) for _ in range(2)))

    def forward(self, x):
        return self.body(x)


class _Sleep(nn.Module):
    def forward(self, x):
        time.sleep(WORK_S)
        return x


def test_the_slowdown_makes_each_step_take_that_many_times_its_work():
    image = np.zeros((20, 30, 3), np.float32)
    options = TileOptions(tile=16, tile_pad=2, step_slowdown=4)
    plan = plan_for(20, 30, options)
    started = time.monotonic()
    run_plan(Sleepy().eval(), image, plan, scale=1, options=options)
    block_steps = plan.count * 2
    assert steps_per_tile(Sleepy()) == 3
    assert time.monotonic() - started >= block_steps * WORK_S * 4


def test_the_out_of_memory_hook_fails_once_at_the_chosen_tile():
    image = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    options = TileOptions(tile=16, tile_pad=2, oom_at_tile=1)
    model = Sleepy().eval()
    plan = plan_for(20, 30, options, 1, model_context(model))
    whole = run_plan(model, image, plan, scale=1, options=TileOptions(tile=16, tile_pad=2)).image
    fed = []
    result = run_plan(model, image, plan, scale=1, options=options, before_forward=fed.append)
    assert count_tiles(20, 30, options) == plan.count == 4
    # The first tile ran as planned; the second raised once, and it and the two after it were cut in
    # four; then every tile ran once.
    assert fed[0] == [plan.tiles[0]] and fed[1] == [plan.tiles[1]] and fed[2][0] not in plan.tiles
    assert result.plan.tile == 8 and result.plan.count == 1 + 3 * 4 and len(fed) == result.plan.count + 1
    torch.testing.assert_close(torch.from_numpy(result.image), torch.from_numpy(whole), atol=1e-6, rtol=0)
