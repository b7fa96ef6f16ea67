"""Fine-tuning end to end on the CPU with the real x4plus weights and a handful of real images."""

from __future__ import annotations

import csv
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrgan.archs import UNetDiscriminatorSN
from esrgan.errors import ConfigError, TrainingDataError, TrainingError, WeightsError
from esrgan.io.imageio import DecodedImage
from esrgan.models.detect import detect
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.train.config import TrainConfig, load_config
from esrgan.train.data import PatchSampler, split_folder
from esrgan.train.loop import Trainer, default_freeze, expand_freeze, freeze
from esrgan.train.losses import PerceptualLoss
from tests.conftest import ROOT, crop_of

# 96 px crops of test images (tests/data) that make the training folder.
CROPS = {"astronaut.png": (100, 100, 196, 196), "coffee.png": (60, 60, 156, 156), "line_art.png": (40, 80, 136, 176),
         "rocket.png": (100, 100, 196, 196), "chelsea_head.png": (80, 80, 176, 176)}
SMOKE = TrainConfig(iters=3, patch=16, batch=2, perceptual_weight=0.0, val_every=3, val_crop=64, device="cpu")


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hr")
    for name, box in CROPS.items():
        crop_of(name, box).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return folder


@pytest.fixture(scope="module")
def finished(hr_dir, store, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    trainer = Trainer(SMOKE, hr_dir, run_dir, store=store)
    before = {k: v.detach().clone() for k, v in trainer.net_g.state_dict().items()}
    path = trainer.run(report=lambda line: None)
    return trainer, before, path, run_dir


def test_frozen_layers_stay_bit_identical_and_the_rest_learns(finished):
    trainer, before, _, _ = finished
    after = trainer.net_g.state_dict()
    frozen = [k for k in before if k.startswith(("conv_first.", *(f"body.{i}." for i in range(16))))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trained = [k for k in before if k not in frozen]
    assert all(not torch.equal(before[k], after[k]) for k in trained if k.endswith("weight"))
    assert trainer.frozen > 0 and trainer.trainable > 0


def test_losses_are_finite_and_logged_with_validation(finished):
    _, _, _, run_dir = finished
    with (run_dir / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iter"]) for r in rows] == [1, 2, 3]
    for row in rows:
        assert math.isfinite(float(row["l_pix"])) and math.isfinite(float(row["l_gan"]))
        assert math.isfinite(float(row["l_d"]))
    assert float(rows[-1]["psnr_y"]) > 15
    assert (run_dir / "curves.png").stat().st_size > 0 and (run_dir / "split.json").is_file()


def test_split_is_recorded_and_skips_broken_images(finished, hr_dir):
    trainer = finished[0]
    assert "broken.png" in trainer.split.skipped
    again = split_folder(hr_dir, (0.7, 0.2, 0.1), seed=0)
    assert [p.name for p in again.train] == [p.name for p in trainer.split.train]
    assert len(again.train) + len(again.val) + len(again.test) == 5 and again.val and again.test


def test_checkpoint_loads_through_the_registry_and_upscales(finished, tmp_path):
    _, _, path, run_dir = finished
    saved = torch.load(path, weights_only=True)
    assert saved["name"] == f"finetuned-{run_dir.name}" and "conv_first.weight" in saved["params_ema"]
    upscaler = Upscaler(ModelStore(tmp_path), Settings(device="cpu", precision="fp32"))
    result = upscaler.upscale(DecodedImage(np.random.default_rng(0).random((12, 10, 3), np.float32)), 4,
                              model=str(path))
    assert result.image.pixels.shape == (48, 40, 3) and result.provenance.model == saved["name"]
    # Dropped into weights/, it is a custom model by its own name, not an override of x4plus.
    path_copy = tmp_path / "mine.pth"
    path_copy.write_bytes(path.read_bytes())
    entries = ModelStore(tmp_path).entries()
    assert saved["name"] in entries and "shipped" in entries["realesrgan-x4plus"].source


def test_resume_continues_from_the_last_checkpoint(finished, hr_dir, store):
    _, _, _, run_dir = finished
    longer = Trainer(TrainConfig(**{**SMOKE.__dict__, "iters": 4}), hr_dir, run_dir, store=store)
    assert longer.resume() and longer.step == 3


def test_freeze_rules():
    assert expand_freeze("conv_first, body.0-2") == ["conv_first", "body.0", "body.1", "body.2"]
    x4plus = detect(ModelStore().state_dict("realesrgan-x4plus"))
    assert default_freeze(x4plus) == "conv_first,body.0-15"
    with pytest.raises(ConfigError, match="no layer"):
        freeze(torch.nn.Conv2d(3, 3, 3), "body.0")


def test_perceptual_loss_needs_real_vgg_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match="--no-perceptual"):
        PerceptualLoss()


def test_perceptual_loss_reads_a_local_vgg19_file(tmp_path):
    from torchvision.models import vgg19

    torch.manual_seed(0)
    weights = tmp_path / "vgg19.pth"
    torch.save(vgg19().state_dict(), weights)  # the file format torchvision caches
    loss = PerceptualLoss(weights)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert loss(a, a).item() == 0 and loss(a, b).item() > 0


def test_unet_discriminator_scores_every_pixel():
    net = UNetDiscriminatorSN(num_feat=16)
    assert net(torch.rand(2, 3, 32, 40)).shape == (2, 1, 32, 40)
    assert hasattr(net.conv1, "parametrizations") or hasattr(net.conv1, "weight_orig")  # spectral norm


def test_yaml_config_and_unknown_options(tmp_path):
    path = tmp_path / "run.yml"
    path.write_text("iters: 10\nmilestones: [5, 8]\ndegradation:\n  noise_range: [1, 10]\n")
    config = load_config(path, {"batch": 2, "iters": None})
    assert (config.iters, config.batch, config.milestones) == (10, 2, (5, 8))
    assert config.degradation.first.noise_range == (1, 10) and config.degradation.second.noise_range == (1, 25)
    path.write_text("iterations: 10\n")
    with pytest.raises(ConfigError, match="unknown training options: iterations"):
        load_config(path, {})
    path.write_text("degradation:\n  noise: [1, 10]\n")
    with pytest.raises(ConfigError, match="unknown degradation options: noise"):
        load_config(path, {})
    path.write_text("iters: ten\n")
    with pytest.raises(ConfigError, match="iters must be a whole number"):
        load_config(path, {})


@pytest.mark.parametrize(("options", "message"), [
    ({"batch": 0}, "batch must be a whole number >= 1"),
    ({"pixel_loss": "l3"}, "pixel_loss must be one of l1, mse"),
    ({"split": (0.5, 0.5, 0.5)}, "split must be three fractions"),
    ({"lr_g": 0.0}, "lr_g must be a number > 0"),
    ({"ema_decay": 1.0}, "ema_decay must be in"),
    ({"milestones": (100, -5)}, "milestones must be iteration numbers"),
])
def test_options_that_cannot_work_are_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


def test_unusable_training_data_gets_a_typed_error(tmp_path, hr_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingDataError, match="no readable images"):
        split_folder(tmp_path / "empty", (0.7, 0.2, 0.1), seed=0)
    with pytest.raises(TrainingDataError, match=r"at least 512px .*\(--patch 128 at 4x\): the largest patch that fits "
                                                r"is --patch 24$"):
        PatchSampler([hr_dir / name for name in CROPS], 512, 4, torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDataError, match="no LR image"):
        PatchSampler([hr_dir / name for name in CROPS], 64, 4, torch.Generator().manual_seed(0), lr_dir=tmp_path)


def test_a_run_folder_that_cannot_be_resumed_says_so(hr_dir, store, tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    trainer = Trainer(SMOKE, hr_dir, tmp_path, store=store)
    with pytest.raises(TrainingError, match="cannot resume from .*new output folder"):
        trainer.resume()


def test_train_prints_a_command_that_runs_once_input_and_output_are_filled_in(hr_dir, weights_dir, tmp_path):
    """The command line as a user meets it: ``train``, then exactly the line it printed, with an
    empty weights folder (the model is the checkpoint's path, nothing else)."""
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
    options = ["--model", "animevideov3", "--iters", "2", "--patch", "16", "--batch", "2", "--no-perceptual",
               "--val-every", "2", "--device", "cpu"]
    trained = subprocess.run([sys.executable, "-m", "esrgan", "train", "--hr-dir", str(hr_dir), *options,
                              "-o", str(tmp_path / "run one")], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert trained.returncode == 0, trained.stderr
    command = trained.stdout.splitlines()[-1].strip()
    python = Path(sys.executable)
    assert shlex.split(command)[:2] == [os.path.relpath(python, ROOT) if python.is_relative_to(ROOT) else str(python),
                                        "-m"]
    source, target = tmp_path / "in put.png", tmp_path / "out put.png"  # spaces: quoted as a shell needs
    crop_of("coffee.png", (80, 80, 97, 94)).save(source)  # 17x14: odd sides
    filled = command.replace("INPUT.png", shlex.quote(str(source))).replace("OUTPUT.png", shlex.quote(str(target)))
    assert filled.count(shlex.quote(str(source))) == 1 and filled.count(shlex.quote(str(target))) == 1
    empty = tmp_path / "empty weights"
    empty.mkdir()
    done = subprocess.run(filled, shell=True, cwd=ROOT, env={**env, "REMASTER_WEIGHTS_FOLDER": str(empty)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with Image.open(target) as image:
        assert image.size == (68, 56)
    assert [p.name for p in empty.iterdir() if p.suffix in (".pth", ".safetensors")] == []


def test_train_on_images_smaller_than_the_patch_says_the_largest_patch_that_fits(weights_dir, tmp_path):
    hr = tmp_path / "small"
    hr.mkdir()
    for index, box in enumerate([(0, 0, 37, 45), (10, 10, 51, 43), (20, 20, 49, 61), (5, 5, 40, 40), (0, 9, 33, 50)]):
        crop_of("coffee.png", box).save(hr / f"{index}.png")  # shorter sides 37, 33, 29, 35, 33: odd
    done = subprocess.run([sys.executable, "-m", "esrgan", "train", "--hr-dir", str(hr), "--model", "animevideov3",
                           "--patch", "16", "--no-perceptual", "--device", "cpu", "-o", str(tmp_path / "run")],
                          cwd=ROOT, env={"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    sides = []
    for path in split_folder(hr, (0.7, 0.2, 0.1), seed=0).train:  # the images training would crop
        with Image.open(path) as image:
            sides.append(min(image.size))
    largest = max(sides) // 4
    assert done.stderr.strip().endswith(f"(--patch 16 at 4x): the largest patch that fits is --patch {largest}")
