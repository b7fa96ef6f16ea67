"""Tiled inference equals whole-image inference, covers every pixel once, reports and stops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from esrgan.errors import Cancelled
from esrgan.imageio import read_image
from esrgan.tiling import TileOptions, count_tiles, plan_tiles, upscale_tiled
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
    assert tiled.shape == whole.shape == (256, 640, 3)
    assert psnr(tiled, whole) >= 45


@pytest.mark.parametrize(("height", "width", "tile", "multiple", "batch"),
                         [(50, 77, 16, 1, 1), (64, 30, 24, 4, 1), (9, 9, 4, 1, 1), (70, 90, 16, 1, 4)])
def test_blended_tiles_weigh_every_output_pixel_exactly_once(height, width, tile, multiple, batch):
    image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    options = TileOptions(tile=tile, tile_pad=8, pre_pad=3, batch=batch)
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
