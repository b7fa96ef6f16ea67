"""The tests' hooks (`tests.hooks`, `tests/launch.py`) do what tests rely on: slow work slow on purpose
(a floor, never a ceiling), an out-of-memory error at a chosen tile, once per run, and a launched
product process that has them."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import torch
from torch import nn

import esrgan.pipeline
import esrgan.tiling.run
from esrgan.tiling.run import TileOptions, count_tiles, model_context, plan_for, run_plan, steps_per_tile
from tests.conftest import ROOT, crop_of
from tests.hooks import Hooks, OutOfMemoryAt, SlowSteps, install
from tests.launch import command

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


def test_the_slowdown_makes_each_step_take_that_many_times_its_work(engine_hooks):
    image = np.zeros((20, 30, 3), np.float32)
    options = TileOptions(tile=16, tile_pad=2)
    plan = plan_for(20, 30, options)
    engine_hooks(slowdown=4)
    started = time.monotonic()
    esrgan.tiling.run.run_plan(Sleepy().eval(), image, plan, scale=1, options=options)
    block_steps = plan.count * 2
    assert steps_per_tile(Sleepy()) == 3
    assert time.monotonic() - started >= block_steps * WORK_S * 4


def test_the_delay_sleeps_at_every_step_and_leaves_the_steps_as_they_were(engine_hooks):
    image = np.zeros((20, 30, 3), np.float32)
    options = TileOptions(tile=16, tile_pad=2)
    plan = plan_for(20, 30, options)
    plain = []
    run_plan(Sleepy().eval(), image, plan, scale=1, options=options, progress=lambda d, t: plain.append((d, t)))
    engine_hooks(delay=0.05)
    seen = []
    started = time.monotonic()
    esrgan.tiling.run.upscale_tiled(Sleepy().eval(), image, scale=1, options=options,
                                    progress=lambda d, t: seen.append((d, t)))
    assert seen == plain and len(seen) == plan.count * 3
    assert time.monotonic() - started >= len(seen) * 0.05


def test_slow_steps_sleep_their_delay_and_their_share_of_the_work():
    seen = []
    steps = SlowSteps(lambda d, t: seen.append((d, t)), delay=0.01, slowdown=3)
    time.sleep(0.05)  # the first step's work
    steps(1, 2)
    assert steps.slept >= 0.01 + 2 * 0.05 and seen == [(1, 2)]
    steps(2, 2)  # no work since: the delay only
    assert 0.01 <= steps.slept - (0.01 + 2 * 0.05) < 0.05 and seen == [(1, 2), (2, 2)]


def test_out_of_memory_at_a_tile_fails_once_at_that_tile():
    image = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    options = TileOptions(tile=16, tile_pad=2)
    model = Sleepy().eval()
    plan = plan_for(20, 30, options, 1, model_context(model))
    whole = run_plan(model, image, plan, scale=1, options=options).image
    fed = []
    result = run_plan(model, image, plan, scale=1, options=options, before_forward=OutOfMemoryAt(1, fed.append))
    assert count_tiles(20, 30, options) == plan.count == 4
    # The first tile ran as planned; the second raised once, and it and the two after it were cut in
    # four; then every tile ran once.
    assert fed[0] == [plan.tiles[0]] and fed[1] == [plan.tiles[1]] and fed[2][0] not in plan.tiles
    assert result.plan.tile == 8 and result.plan.count == 1 + 3 * 4 and len(fed) == result.plan.count + 1
    torch.testing.assert_close(torch.from_numpy(result.image), torch.from_numpy(whole), atol=1e-6, rtol=0)


def test_installed_hooks_fail_every_run_once_and_come_off():
    image = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    options = TileOptions(tile=16, tile_pad=2)
    plan = plan_for(20, 30, options)
    original = esrgan.tiling.run.run_plan
    assert esrgan.pipeline.run_plan is original
    uninstall = install(Hooks(oom_at_tile=2))
    try:
        assert esrgan.pipeline.run_plan is esrgan.tiling.run.run_plan is not original
        for _ in range(2):  # each run its own count: both fail at their third tile
            result = esrgan.tiling.run.run_plan(Sleepy().eval(), image, plan, scale=1, options=options)
            assert result.plan.tile == 8 and result.plan.count == 2 + 2 * 4
    finally:
        uninstall()
    assert esrgan.pipeline.run_plan is esrgan.tiling.run.run_plan is original


def test_a_launched_process_has_the_hooks_and_runs_the_real_command(tmp_path, weights_dir):
    """``tests/launch.py -m esrgan``: the CLI itself, with the tests' variables read by the launcher only."""
    source = tmp_path / "in.png"
    crop_of("coffee.png", (10, 20, 107, 83)).save(source)  # 97x63: two tiles of 64
    env = {**os.environ, "TEST_OOM_AT_TILE": "1", "REMASTER_WEIGHTS_FOLDER": str(weights_dir)}
    done = subprocess.run(command("-m", "esrgan", "-v", "upscale", str(source), "-o", str(tmp_path / "out.png"),
                                  "--fast", "--tile", "64", "--fp32", "--device", "cpu"),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "out of memory with 64 px tiles: going on with 32 px tiles" in done.stderr
    assert (tmp_path / "out.png").is_file()
