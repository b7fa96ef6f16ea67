"""``python -m esrgan compare``: candidates on a crop equal the same region of a full run, files and
the sheet come out at the right sizes, and a bad crop is a clear error that leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from esrgan.cli.compare import LABEL_HEIGHT, MIN_PANEL_WIDTH
from esrgan.cli.env import engine_settings
from esrgan.compare import CONTEXT, most_detailed, window
from esrgan.io.imageio import read_image
from esrgan.pipeline import Upscaler
from tests.conftest import ROOT, crop_of, psnr

# plain convolutions, squeeze-excitation blocks, whole-image attention
MODELS = ("realesr-animevideov3", "realcugan-x4-no-denoise", "dat-light-x4")
CROP = (96, 96, 24, 20)  # its window (CONTEXT around, origin on the grid) lies inside the 200 x 180 image


def run_cli(*args: str, weights) -> subprocess.CompletedProcess:
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "esrgan", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")  # spandrel 0.4.2's DAT builder
def test_crops_equal_the_same_region_of_a_full_run_and_the_sheet_shows_them(tmp_path, weights_dir):
    source = tmp_path / "photo.png"
    crop_of("coffee.png", (150, 120, 350, 300)).save(source)  # 200 x 180
    x, y, w, h = CROP
    wx, wy, ww, wh = window(CROP, 200, 180)
    assert wx > 0 and wy > 0 and wx + ww < 200 and ww < 200 - 2 * 16  # a crop, not the whole image in disguise
    out = tmp_path / "out"
    done = run_cli("compare", str(source), "-s", "4", "--fp32", "--models", ",".join(MODELS),
                   "--crop", ",".join(map(str, CROP)), "-o", str(out), weights=weights_dir)
    assert done.returncode == 0, done.stderr
    upscaler = Upscaler(None, engine_settings(weights_folder=str(weights_dir), precision="fp32", device="cpu"))
    image = read_image(source)
    figures = {}
    for model in MODELS:
        assert model in done.stdout
        with Image.open(out / f"{model}_96x80.png") as result:
            got = np.asarray(result.convert("RGB"))
        full = upscaler.upscale(image, 4, model=model).image.rgb()
        region = np.round(full[y * 4 : (y + h) * 4, x * 4 : (x + w) * 4] * 255).astype(np.uint8)
        figures[model] = psnr(got, region)
    print("crop vs full run, dB:", figures)
    assert all(value >= 40 for value in figures.values()), figures
    with Image.open(out / "sheet.png") as board:
        assert board.size == (max(96, MIN_PANEL_WIDTH) * (len(MODELS) + 1), 80 + LABEL_HEIGHT)
        first = np.asarray(board.convert("RGB"))[:80, :96]
    original = np.asarray(Image.open(source).convert("RGB"))[y : y + h, x : x + w]
    assert np.array_equal(first, np.repeat(np.repeat(original, 4, axis=0), 4, axis=1))
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{m}_96x80.png" for m in MODELS), "sheet.png"])


@pytest.mark.parametrize("crop, reason", [("290,10,30,30", "not inside"), ("0,0,300,260", "too large"),
                                          ("5,5,0,10", "not inside")])
def test_a_bad_crop_is_a_clear_error_with_exit_code_2_and_no_files(tmp_path, weights_dir, crop, reason):
    source = tmp_path / "photo.png"
    crop_of("coffee.png", (0, 0, 300, 260)).save(source)
    out = tmp_path / "out"
    done = run_cli("compare", str(source), "--crop", crop, "-o", str(out), weights=weights_dir)
    assert done.returncode == 2 and reason in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_the_proposed_crop_is_the_most_detailed_region():
    flat = np.full((60, 90, 3), 0.5, dtype=np.float32)
    flat[31:45, 70:83] = np.indices((14, 13)).sum(axis=0)[..., None] % 2  # a checkerboard: all the detail
    x, y, w, h = most_detailed(flat, (16, 16))
    assert (w, h) == (16, 16) and x <= 70 and x + w >= 83 and y <= 31 and y + h >= 45
    assert most_detailed(flat[:10, :12], (16, 16))[2:] == (12, 10)  # never larger than the image
    assert CONTEXT >= 48
