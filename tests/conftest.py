"""Shared fixtures: real weights (converted once per session), real images from ../shared/datasets."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrgan.imageio import read_image
from esrgan.pipeline import UpscaleOptions, Upscaler
from esrgan.weights import ModelStore

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("REMASTER_DATASETS", ROOT.parent / "shared" / "datasets"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


def dataset_image(relative: str) -> Path:
    path = DATASETS / relative
    if not path.is_file():
        pytest.skip(f"benchmark image {path} not present")
    return path


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def store(weights_dir) -> ModelStore:
    return ModelStore(weights_dir)


@pytest.fixture(scope="session")
def upscaler(store) -> Upscaler:
    return Upscaler(store, UpscaleOptions(device="cpu", precision="fp32"))


@pytest.fixture(scope="session")
def small_photo() -> np.ndarray:
    """A 32x40 crop of a real photo (Set5 baby, LR), (H, W, 3) float32 in [0, 1]."""
    return read_image(dataset_image("Set5_LRx4/babyx4.png")).pixels[20:52, 30:70]


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def crop_of(relative: str, box: tuple[int, int, int, int], mode: str = "RGB") -> Image.Image:
    """A small crop of a dataset image, in ``mode``."""
    with Image.open(dataset_image(relative)) as image:
        return image.convert(mode).crop(box)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture
def make_app(tmp_path, weights_dir):
    """Build an app on temporary folders; extra config as keyword arguments."""
    from web import create_app

    apps = []

    def build(**config):
        app = create_app({
            "TESTING": True, "UPLOAD_FOLDER": str(tmp_path / "uploads"), "WEIGHTS_FOLDER": str(weights_dir),
            "PRELOAD_MODELS": False, "DEVICE": "cpu", "MAX_CONTENT_LENGTH": 4 * 2**20, **config,
        })
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["remaster"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()
