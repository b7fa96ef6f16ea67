"""The realistic degradation: deterministic by seed, the right size, and really degraded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esrgan.errors import ConfigError
from esrgan.io.imageio import read_image
from esrgan.quality.blur import anisotropic_kernel, sinc_kernel
from esrgan.quality.degrade import DegradationConfig, DegradationStage, degrade, degrade_image
from esrgan.quality.metrics import mod_crop, psnr
from esrgan.quality.resize import imresize
from tests.conftest import dataset_image


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return mod_crop(read_image(dataset_image("astronaut_badge.png")).pixels, 4)[:128, :128]


def test_same_seed_same_image_other_seed_other_image(hr):
    a, b, c = (degrade_image(hr, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_output_is_quarter_size_8bit_and_worse_than_bicubic(hr):
    lr = degrade_image(hr, seed=1)
    assert lr.shape == (32, 32, 3)
    assert np.allclose(lr * 255, np.round(lr * 255), atol=1e-4)
    clean = imresize(hr.astype(np.float64), 0.25)
    assert psnr(lr, clean, peak=1.0) < 35  # blur, noise and JPEG leave their mark


def test_batches_draw_per_image_and_reproduce_with_a_generator(hr):
    batch = torch.from_numpy(np.stack([hr.transpose(2, 0, 1)] * 3)).float()
    first = degrade(batch, DegradationConfig(), torch.Generator().manual_seed(3))
    again = degrade(batch, DegradationConfig(), torch.Generator().manual_seed(3))
    assert first.shape == (3, 3, 32, 32)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first[0], first[1])  # each image gets its own kernel and noise


def test_scale_2_config():
    image = np.random.default_rng(0).random((64, 48, 3), dtype=np.float32)
    assert degrade_image(image, DegradationConfig(scale=2), seed=0).shape == (32, 24, 3)


def test_kernels_are_normalised_and_shaped():
    iso = anisotropic_kernel(21, 2.0, 2.0, 0.0)
    assert iso.sum().item() == pytest.approx(1.0) and torch.allclose(iso, iso.T)
    aniso = anisotropic_kernel(21, 3.0, 0.5, 0.0)
    assert aniso[10].sum() > aniso[:, 10].sum()  # wide along x, narrow along y
    plateau = anisotropic_kernel(15, 2.0, 2.0, 0.0, "plateau", 2.0)
    assert plateau.sum().item() == pytest.approx(1.0)
    sinc = sinc_kernel(np.pi / 3, 21)
    assert sinc.sum().item() == pytest.approx(1.0) and sinc.min() < 0  # ringing lobes


def test_the_two_rounds_are_one_kind_with_real_esrgans_defaults():
    cfg = DegradationConfig()
    first, second = cfg.first, cfg.second
    assert isinstance(first, DegradationStage) and isinstance(second, DegradationStage)
    # train_realesrgan_x4plus.yml: the second round blurs, resizes and adds noise less.
    assert (first.blur_sigma, second.blur_sigma) == ((0.2, 3.0), (0.2, 1.5))
    assert (first.resize_prob, second.resize_prob) == ((0.2, 0.7, 0.1), (0.3, 0.4, 0.3))
    assert (first.resize_range, second.resize_range) == ((0.15, 1.5), (0.3, 1.2))
    assert (first.noise_range, second.noise_range) == ((1, 30), (1, 25))
    assert (first.poisson_scale_range, second.poisson_scale_range) == ((0.05, 3), (0.05, 2.5))
    assert first.jpeg_range == second.jpeg_range == (30, 95) and first.sinc_prob == second.sinc_prob == 0.1
    assert (cfg.scale, cfg.second_blur_prob, cfg.final_sinc_prob) == (4, 0.8, 0.8)


def test_real_esrgans_option_names_set_either_round():
    cfg = DegradationConfig.from_options({"noise_range": [1, 10], "noise_range2": [2, 5], "second_blur_prob": 0.5,
                                          "scale": 2})
    assert (cfg.first.noise_range, cfg.second.noise_range, cfg.second_blur_prob, cfg.scale) == ((1, 10), (2, 5), 0.5, 2)
    assert cfg.first.jpeg_range == DegradationConfig().first.jpeg_range  # the rest keeps its defaults
    for options, message in [({"nois_range": [1, 2]}, "unknown degradation options: nois_range"),
                             ({"jpeg_range2": [95, 30]}, "jpeg_range2 must be two numbers, low then high"),
                             ({"sinc_prob": 1.5}, "sinc_prob must be a probability"),
                             ({"kernel_list": ["iso", "blurry"]}, "kernel_list takes kinds from"),
                             ({"resize_prob2": [0.5, 0.5]}, "resize_prob2 takes three")]:
        with pytest.raises(ConfigError, match=message):
            DegradationConfig.from_options(options)


def test_a_changed_round_changes_the_result(hr):
    harsh = DegradationConfig.from_options({"noise_range2": [40, 50], "gaussian_noise_prob2": 1.0})
    assert not np.array_equal(degrade_image(hr, harsh, seed=7), degrade_image(hr, seed=7))
