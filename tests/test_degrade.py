"""The realistic degradation: deterministic by seed, the right size, and really degraded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esrgan.degrade import DegradationConfig, anisotropic_kernel, degrade, degrade_image, sinc_kernel
from esrgan.imageio import read_image
from esrgan.metrics import mod_crop, psnr
from esrgan.resize import imresize
from tests.conftest import dataset_image


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return mod_crop(read_image(dataset_image("Set5/butterfly.png")).pixels, 4)[:128, :128]


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
