"""The metric conventions: known pairs, mod-crop and border rules, grayscale, the published figure."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esrgan.quality.evaluate import build_methods, evaluate, find_lr, write_csv
from esrgan.quality.metrics import mod_crop, psnr, quality, shave, ssim, to_y
from esrgan.quality.niqe import niqe
from esrgan.quality.report import markdown_table
from esrgan.quality.resize import imresize
from tests.conftest import DATASETS, dataset_image

benchmarks = pytest.mark.skipif(DATASETS is None, reason="reproduces a published benchmark figure: set "
                                "REMASTER_DATASETS to a folder holding Set5/, Set14/ and their *_LRx4/")


def test_identical_images_score_perfectly():
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    scores = quality(image, image, 4)
    assert scores["psnr_y"] == float("inf") and scores["ssim_y"] == pytest.approx(1.0)


def test_known_error_gives_the_known_psnr():
    a = np.full((32, 32), 100.0)
    assert psnr(a, a + 5) == pytest.approx(10 * np.log10(255**2 / 25))


def test_a_one_pixel_shift_costs_psnr_and_ssim():
    hr = np.asarray(Image.open(dataset_image("Set5/butterfly.png")))
    shifted = np.roll(hr, 1, axis=1)
    scores = quality(shifted, hr, 4)
    assert 15 < scores["psnr_y"] < 30 and scores["ssim_y"] < 0.95


def test_mod_crop_and_border_shave():
    image = np.zeros((390, 587, 3))
    assert mod_crop(image, 4).shape == (388, 584, 3)
    assert shave(np.zeros((20, 30)), 4).shape == (12, 22)
    # Differences confined to the shaved border do not count.
    hr = np.full((40, 40, 3), 128, np.uint8)
    sr = hr.copy()
    sr[:4] = 0
    assert quality(sr, hr, 4)["psnr_y"] == float("inf")


def test_y_channel_is_bt601_and_gray_is_its_own_y():
    white, black = np.full((1, 1, 3), 255.0), np.zeros((1, 1, 3))
    assert to_y(white)[0, 0] == pytest.approx(235.0) and to_y(black)[0, 0] == pytest.approx(16.0)
    gray = np.full((16, 16, 1), 77.0)
    assert (to_y(gray) == 77.0).all()
    assert ssim(gray, gray) == pytest.approx(1.0)


@pytest.mark.parametrize("factor", [0.25, 0.5, 2, 4])
def test_matlab_bicubic_agrees_with_pillows_cubic_away_from_the_border(factor):
    # Pillow's float resampling is an independent implementation of the same antialiased cubic
    # (a = -0.5, pixel centres at +0.5); only the border rule differs (MATLAB mirrors, Pillow clips).
    hr = np.asarray(Image.open(dataset_image("Set14/comic.png")), np.float64)
    ours = imresize(hr, factor)
    height, width = ours.shape[:2]
    pillow = np.stack([np.asarray(Image.fromarray(hr[..., c].astype(np.float32), "F").resize((width, height),
                                                                                          Image.BICUBIC))
                       for c in range(3)], axis=2)
    border = 8
    np.testing.assert_allclose(ours[border:-border, border:-border], pillow[border:-border, border:-border],
                               atol=1e-3)


@benchmarks
def test_matlab_bicubic_matches_the_benchmark_lr_files():
    hr = np.asarray(Image.open(DATASETS / "Set14/comic.png"))
    lr = np.asarray(Image.open(DATASETS / "Set14_LRx4/comicx4.png"))
    ours = imresize(mod_crop(hr, 4), 0.25)
    difference = np.abs(ours.astype(int) - lr.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.005


def test_given_lr_files_are_scored_and_written_as_csv(tmp_path):
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir()
    lr_dir.mkdir()
    for name in ("Set5/baby.png", "Set5/bird.png"):
        hr = np.asarray(Image.open(dataset_image(name)))[:201, :203]  # not multiples of 4: mod-cropped
        stem = dataset_image(name).stem
        Image.fromarray(hr).save(hr_dir / f"{stem}.png")
        Image.fromarray(imresize(mod_crop(hr, 4), 0.25)).save(lr_dir / f"{stem}x4.png")
    result = evaluate(hr_dir, 4, build_methods(["nearest", "bicubic"], upscaler=None), lr_dir=lr_dir)
    rows = {(r["image"], r["method"]): r for r in result.rows}
    assert len(rows) == 4 and not result.failures
    for image in ("astronaut.png", "coffee.png"):
        assert 22 < rows[image, "nearest"]["psnr_y"] < rows[image, "bicubic"]["psnr_y"] < 40
    mean = result.summary()[1]
    assert mean["method"] == "bicubic"
    assert mean["psnr_y"] == pytest.approx(np.mean([rows[i, "bicubic"]["psnr_y"] for i in ("astronaut.png",
                                                                                          "coffee.png")]))
    write_csv(result, tmp_path / "scores.csv")
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0].startswith("image,method,scale,degradation,psnr_y,ssim_y,psnr_rgb")
    assert len(lines) == 1 + 4 + 2 and lines[-1].startswith(f"MEAN,bicubic,4,given,{mean['psnr_y']:.4f}")


@benchmarks
def test_set5_bicubic_reproduces_the_published_x4_figure(tmp_path):
    methods = build_methods(["bicubic"], upscaler=None)
    result = evaluate(DATASETS / "Set5", 4, methods, lr_dir=DATASETS / "Set5_LRx4")
    mean = result.summary()[0]
    assert mean["psnr_y"] == pytest.approx(28.42, abs=0.05)
    assert mean["ssim_y"] == pytest.approx(0.8104, abs=0.002)
    write_csv(result, tmp_path / "scores.csv")
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0].startswith("image,method,scale,degradation,psnr_y,ssim_y,psnr_rgb")
    assert lines[-1].startswith("MEAN,bicubic,4,given,28.4")


def test_grayscale_benchmark_image_is_scored(tmp_path):
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    Image.open(dataset_image("Set14/bridge.png")).crop((0, 0, 96, 96)).save(hr_dir / "bridge.png")
    methods = build_methods(["nearest", "bicubic"], upscaler=None)
    for degradation in ("bicubic", "realistic"):
        rows = evaluate(hr_dir, 4, methods, degradation=degradation).rows
        assert [r["method"] for r in rows] == ["nearest", "bicubic"]
        assert all(np.isfinite(r["psnr_y"]) for r in rows)


def test_lr_files_are_found_by_the_benchmark_naming(tmp_path):
    (tmp_path / "babyx4.png").touch()
    (tmp_path / "bird.jpg").touch()
    assert find_lr(tmp_path, "baby", 4).name == "babyx4.png"
    assert find_lr(tmp_path, "bird", 4).name == "bird.jpg"
    assert find_lr(tmp_path, "head", 4) is None


def test_a_broken_image_is_skipped_not_fatal(tmp_path):
    Image.open(dataset_image("Set5/bird.png")).crop((0, 0, 64, 64)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = evaluate(tmp_path, 4, build_methods(["bicubic"], None))
    assert [r["image"] for r in result.rows] == ["good.png"] and "broken.png" in result.failures


NIQE_IMAGES = Path(__file__).parent / "data" / "niqe"


def test_evaluate_adds_niqe_and_the_ground_truth_scores_better_than_bicubic(tmp_path):
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    (hr_dir / "chelsea.png").write_bytes((NIQE_IMAGES / "chelsea.png").read_bytes())
    result = evaluate(hr_dir, 4, build_methods(["bicubic"], upscaler=None))
    (row,) = result.rows
    hr = np.asarray(Image.open(hr_dir / "chelsea.png"))
    assert row["niqe"] > niqe(hr, crop_border=4) + 1  # blur is what NIQE penalises
    write_csv(result, tmp_path / "scores.csv")
    header = (tmp_path / "scores.csv").read_text().splitlines()[0]
    assert header == "image,method,scale,degradation,psnr_y,ssim_y,psnr_rgb,ssim_rgb,vgg,niqe,seconds"
    assert "| NIQE |" in markdown_table(result) and not any("NIQE not" in n for n in result.notes)


def test_no_reference_cli_scores_photos_without_ground_truth(tmp_path, weights_dir):
    lr_dir = tmp_path / "photos"
    lr_dir.mkdir()
    cat = np.asarray(Image.open(NIQE_IMAGES / "chelsea.png"))
    Image.fromarray(imresize(cat, 0.25)).save(lr_dir / "cat.png")  # 96x72, a real photo's detail level
    Image.fromarray(cat[:20, :20]).save(lr_dir / "tiny.png")  # 80x80 upscaled: too small for NIQE
    csv_path, report = tmp_path / "scores.csv", tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "esrgan", "evaluate", "--no-reference", str(lr_dir), "-s", "4",
         "--methods", "bicubic,realesrgan", "--csv", str(csv_path), "--report", str(report)],
        cwd=Path(__file__).parent.parent, env={"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {(r["image"], r["method"]): r for r in csv.DictReader(csv_path.read_text().splitlines())}
    bicubic, model = rows["cat.png", "bicubic"], rows["cat.png", "realesrgan"]
    assert bicubic["psnr_y"] == "" and bicubic["degradation"] == "none (no reference)"
    # The photo model restores the fur that bicubic blurs: a far better NIQE (4.3 against 8.4 here).
    assert float(model["niqe"]) < float(bicubic["niqe"]) - 2
    assert rows["tiny.png", "bicubic"]["niqe"] == ""
    assert "| method | NIQE | s / image |" in done.stdout and "PSNR" not in done.stdout
    assert "NIQE not measured on tiny.png" in done.stdout
    assert {"report.md", "crops.png", "niqe.png"} <= {p.name for p in report.iterdir()}
