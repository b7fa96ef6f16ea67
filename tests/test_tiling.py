"""Tiled inference equals whole-image inference, covers every pixel once, reports and stops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from esrgan.errors import Cancelled
from esrgan.io.imageio import read_image
from esrgan.tiling.plan import TileOptions, count_tiles, plan_for, plan_tiles, work_pixels
from esrgan.tiling.run import run_plan, upscale_tiled
from esrgan.tiling.steps import steps_per_tile
from esrgan.tiling.tile_size import DEFAULT_TILE_CPU, MIN_TILE_CPU, cpu_tile
from tests.conftest import dataset_image, psnr


class Nearest(torch.nn.Module):
    """A model whose output at each pixel depends on that pixel only."""

    def forward(self, x):
        return F.interpolate(x, scale_factor=4, mode="nearest")


def test_tiled_x4plus_matches_whole_image_on_a_real_photo(store):
    model = store.load("realesrgan-x4plus", "cpu").module
    image = read_image(dataset_image("Set14_LRx4/zebrax4.png")).pixels[:64, :192]
    whole = upscale_tiled(model, image, scale=4, options=TileOptions(tile=0))
    tiled = upscale_tiled(model, image, scale=4, options=TileOptions(tile=96))
    assert count_tiles(64, 160, TileOptions(tile=96)) == 2
    assert tiled.shape == whole.shape == (256, 640, 3)
    assert psnr(tiled, whole) >= 50


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize(("height", "width", "tile", "multiple", "batch"),
                         [(50, 77, 16, 1, 1), (64, 30, 24, 4, 1), (9, 9, 4, 1, 1), (70, 90, 16, 1, 4),
                          (3, 500, 16, 1, 1), (400, 2, 16, 2, 2)])
def test_blended_tiles_weigh_every_output_pixel_exactly_once(height, width, tile, multiple, batch, fixed):
    image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    options = TileOptions(tile=tile, tile_pad=8, pre_pad=3, batch=batch, fixed_window=fixed)
    out = upscale_tiled(Nearest(), image, scale=4, size_multiple=multiple, options=options)
    np.testing.assert_allclose(out, image.repeat(4, 0).repeat(4, 1), atol=1e-5)


def test_tiles_cover_the_image_without_gaps_or_overlaps():
    tiles = plan_tiles(100, 70, 32, 8, multiple=4)
    covered = np.zeros((100, 70), int)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        covered[y0:y1, x0:x1] += 1
        assert y0 % 4 == 0 and x0 % 4 == 0
        assert min(y1 - y0, x1 - x0) >= 16  # balanced: no thin remainder tiles
    assert (covered == 1).all()


def test_fixed_windows_have_one_shape_and_hold_their_cores_with_context():
    tiles = plan_tiles(1024, 700, 512, 32, fixed=True)
    assert {(t.window[1] - t.window[0], t.window[3] - t.window[2]) for t in tiles} == {(576, 576)}
    covered = np.zeros((1024, 700), int)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        covered[y0:y1, x0:x1] += 1
        wy0, wy1, wx0, wx1 = t.window
        assert 0 <= wy0 and wy1 <= 1024 and 0 <= wx0 and wx1 <= 700
        # every side of the core inside the image keeps at least tile_pad of real context
        assert (y0 == 0 or y0 - wy0 >= 32) and (y1 == 1024 or wy1 - y1 >= 32)
        assert (x0 == 0 or x0 - wx0 >= 32) and (x1 == 700 or wx1 - x1 >= 32)
    assert (covered == 1).all()
    # a side shorter than a window keeps the whole side
    assert {t.window[3] - t.window[2] for t in plan_tiles(1024, 300, 512, 32, fixed=True)} == {300}


def test_progress_reports_each_tile_and_cancel_stops_between_tiles():
    image = np.zeros((40, 40, 3), np.float32)
    options = TileOptions(tile=16, tile_pad=4, pre_pad=0)
    seen = []
    upscale_tiled(Nearest(), image, scale=4, options=options, progress=lambda d, t: seen.append((d, t)))
    total = count_tiles(40, 40, options)
    assert seen == [(i, total) for i in range(1, total + 1)] and total == 9
    with pytest.raises(Cancelled):
        upscale_tiled(Nearest(), image, scale=4, options=options, cancelled=lambda: len(seen) > 10,
                      progress=lambda d, t: seen.append((d, t)))
    assert len(seen) == 11  # stopped after two more tiles, not at the end


def test_a_thin_strip_runs_as_few_long_tiles_and_costs_its_pixels():
    options = TileOptions(tile=384, tile_pad=32)
    assert count_tiles(1, 2048, options) == count_tiles(2048, 1, options) == 1
    assert work_pixels(1, 2048, options) == work_pixels(2048, 1, options) == 2048
    assert work_pixels(45, 45, options) == 2025
    long = 4_194_304  # within a 16 MP pixel limit, as one row
    assert count_tiles(1, long, options) == 29  # each window about the area of one 384 px tile
    assert long < work_pixels(1, long, options) < 1.001 * long
    # Ordinary images still pay their context, and work_pixels says so.
    assert work_pixels(1000, 1000, options) > 1.2e6


class Blocks(torch.nn.Module):
    """A tiny network with a ``body`` of blocks, as RRDBNet and SRVGGNetCompact have."""

    def __init__(self, blocks: int = 5) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(*(torch.nn.Conv2d(3, 3, 1) for _ in range(blocks)))
        self.calls = 0

    def forward(self, x):
        for block in self.body:
            self.calls += 1
            x = block(x)
        return F.interpolate(x, scale_factor=4, mode="nearest")


def test_x4plus_reports_every_rrdb_block_of_a_one_tile_job(store):
    model = store.load("realesrgan-x4plus", "cpu").module
    assert steps_per_tile(model) == 24  # 23 RRDB blocks, and the tile's storing
    compact = store.load("realesr-animevideov3", "cpu").module
    assert steps_per_tile(compact) == 19  # 18 convolutions, and the storing
    image = np.random.default_rng(0).random((12, 12, 3), dtype=np.float32)
    seen = []
    upscale_tiled(model, image, scale=4, options=TileOptions(tile=384), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 24) for i in range(1, 25)]


def test_cancel_stops_inside_the_forward_pass_within_one_step(store):
    model = store.load("realesrgan-x4plus", "cpu").module
    image = np.random.default_rng(0).random((12, 12, 3), dtype=np.float32)
    seen = []
    with pytest.raises(Cancelled):
        upscale_tiled(model, image, scale=4, options=TileOptions(tile=384),
                      progress=lambda d, t: seen.append(d), cancelled=lambda: len(seen) >= 3)
    assert seen == [1, 2, 3]  # the one tile's forward pass was left after its third block
    out = upscale_tiled(model, image, scale=4, options=TileOptions(tile=384))  # the network is unharmed
    assert out.shape == (48, 48, 3)


def test_steps_are_per_batch_of_tiles_monotonic_and_end_at_the_total():
    model = Blocks(5)
    image = np.random.default_rng(0).random((40, 40, 3), dtype=np.float32)
    options = TileOptions(tile=16, tile_pad=4, batch=4)
    seen = []
    out = upscale_tiled(model, image, scale=4, options=options, progress=lambda d, t: seen.append((d, t)))
    total = count_tiles(40, 40, options) * 6
    assert [t for _, t in seen] == [total] * len(seen) and seen[-1] == (total, total)
    done = [d for d, _ in seen]
    assert done == sorted(done) and len(done) > count_tiles(40, 40, options)
    assert out.shape == (160, 160, 3)
    model(torch.zeros(1, 3, 4, 4))  # outside a tiled run the hooks do nothing


class Recording(torch.nn.Module):
    """Nearest 4x, remembering the shape of every window it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.windows = []

    def forward(self, x):
        self.windows.extend([tuple(x.shape[-2:])] * x.shape[0])
        return F.interpolate(x, scale_factor=4, mode="nearest")


def test_one_plan_is_what_the_estimate_counts_and_what_the_run_runs():
    image = np.random.default_rng(1).random((70, 45, 3), dtype=np.float32)
    options = TileOptions(tile=24, tile_pad=6, pre_pad=1)
    plan = plan_for(70, 45, options, size_multiple=2)
    model = Recording()
    seen = []
    result = run_plan(model, image, plan, scale=4, options=options, progress=lambda d, t: seen.append((d, t)))
    assert result.plan == plan and len(model.windows) == plan.count == count_tiles(70, 45, options, 2)
    assert sum(h * w for h, w in model.windows) == plan.work_pixels == work_pixels(70, 45, options, 2)
    assert seen[-1] == (plan.count, plan.count)  # one step per tile for a network without blocks
    np.testing.assert_allclose(result.image, image.repeat(4, 0).repeat(4, 1), atol=1e-5)


def test_the_cpu_tile_follows_the_free_ram():
    plenty, short = 16 * 2**30, 2**30
    assert cpu_tile(512 * 512, 32, half_precision=False, ram=plenty) == DEFAULT_TILE_CPU
    assert MIN_TILE_CPU < cpu_tile(512 * 512, 32, half_precision=False, ram=short) < DEFAULT_TILE_CPU
    assert cpu_tile(512 * 512, 32, half_precision=True, ram=short) > cpu_tile(512 * 512, 32, False, ram=short)
    assert cpu_tile(512 * 512, 32, half_precision=False, ram=0) == MIN_TILE_CPU
    # a huge canvas keeps the activations near their budget, whatever the RAM
    assert cpu_tile(8192 * 8192, 32, half_precision=True, ram=plenty) == 256


def test_a_plan_cut_smaller_keeps_its_other_tiles_and_covers_the_image_once():
    plan = plan_for(100, 90, TileOptions(tile=48, tile_pad=8), size_multiple=2)
    smaller = plan.split(list(plan.tiles[1:]), 24)
    assert smaller.tiles[0] == plan.tiles[0] and smaller.count > plan.count and smaller.tile == 24
    covered = np.zeros(smaller.padded_size, int)
    for t in smaller.tiles:
        covered[t.core[0] : t.core[1], t.core[2] : t.core[3]] += 1
        assert t.core[0] % 2 == 0 and t.core[2] % 2 == 0
    assert (covered == 1).all()
    with pytest.raises(ValueError):
        plan.split(list(plan.tiles), 4)  # narrower than the blending bands
