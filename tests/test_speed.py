"""Every way of running the network against fp32 torch on a real image; the measured choice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from esrgan import speed
from esrgan.imageio import DecodedImage, read_image
from esrgan.pipeline import UpscaleOptions, Upscaler
from esrgan.speed import MIN_FAITHFUL_PSNR, choose_runtime
from esrgan.tiling import TileOptions, upscale_tiled
from tests.conftest import dataset_image, psnr

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return read_image(dataset_image("Set14_LRx4/baboonx4.png")).pixels[30:78, 40:88]


def run(store, photo, device="cpu", dtype=torch.float32, channels_last=False) -> np.ndarray:
    loaded = store.load("realesrgan-x4plus", device, dtype, channels_last)
    return upscale_tiled(loaded.module, photo, scale=4, options=TileOptions(tile=0), device=device,
                         dtype=dtype, channels_last=channels_last)


@pytest.fixture(scope="module")
def reference(store, photo) -> np.ndarray:
    return run(store, photo)


def test_channels_last_computes_the_same(store, photo, reference):
    assert psnr(run(store, photo, channels_last=True), reference) > 60


def test_bf16_on_the_cpu_stays_faithful_to_fp32(store, photo, reference):
    try:
        out = run(store, photo, dtype=torch.bfloat16, channels_last=True)
    except RuntimeError as exc:
        pytest.skip(f"no bf16 kernels on this CPU: {exc}")
    assert psnr(out, reference) >= MIN_FAITHFUL_PSNR


def test_calibration_is_measured_once_recorded_and_reused(store, tmp_path, monkeypatch):
    record = tmp_path / "calibration.json"
    runtime = choose_runtime(torch.device("cpu"), store=store, record=record)
    saved = json.loads(record.read_text())
    assert runtime.precision == saved["chosen"] in ("fp32", "bf16")
    assert saved["machine"] == speed.machine_key() and saved["fp32_seconds"] > 0
    if runtime.precision == "bf16":
        assert saved["bf16_psnr"] >= MIN_FAITHFUL_PSNR
    monkeypatch.setattr(speed, "_time", lambda *a: pytest.fail("measured again"))
    assert choose_runtime(torch.device("cpu"), store=store, record=record).precision == runtime.precision


def test_the_user_can_force_precision_and_layout():
    forced = choose_runtime(torch.device("cpu"), "fp32", "torch")
    assert (forced.precision, forced.backend, forced.reason) == ("fp32", "torch", "chosen by the user")
    with pytest.raises(ValueError, match="CUDA only"):
        choose_runtime(torch.device("cpu"), "fp16")


def test_provenance_names_the_runtime(store):
    upscaler = Upscaler(store, UpscaleOptions(device="cpu", precision="fp32", backend="torch"))
    result = upscaler.upscale(DecodedImage(np.full((8, 8, 3), 0.5, np.float32)), 4, model="realesr-animevideov3")
    assert (result.provenance.precision, result.provenance.backend) == ("fp32", "torch")


@cuda
def test_cuda_fp16_matches_cpu_fp32(store, photo, reference):
    out = run(store, photo, device="cuda", dtype=torch.float16, channels_last=True)
    assert psnr(out, reference) >= MIN_FAITHFUL_PSNR


@cuda
def test_cuda_is_the_automatic_device_with_fp16(store):
    upscaler = Upscaler(store, UpscaleOptions())
    result = upscaler.upscale(DecodedImage(np.full((40, 40, 3), 0.5, np.float32)), 4)
    assert result.provenance.device.startswith("cuda") and result.provenance.precision == "fp16"
