"""The ncnn backend: the shipped graphs on ncnn's CPU path and on a real Vulkan device (Mesa's lavapipe
where no GPU is present), through the same tiler as torch, against torch fp32 on the converted weights."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from esrgan.archs import RRDBNet
from esrgan.errors import BackendUnavailableError, InvalidOptionError
from esrgan.io.imageio import DecodedImage
from esrgan.listing import models_listing
from esrgan.pipeline import Upscaler
from esrgan.runtime import devices
from esrgan.runtime.choose import MIN_FAITHFUL_PSNR, MIN_SPEEDUP, Calibration, machine_key
from esrgan.runtime.measure import fastest_faithful
from esrgan.runtime.ncnn_backend import VulkanDevice, vulkan_devices
from esrgan.settings import Settings
from tests.conftest import crop_of, psnr

ncnn = pytest.importorskip("ncnn", reason="the ncnn wheel is not installed (requirements.txt)")
VULKAN = vulkan_devices()
needs_vulkan = pytest.mark.skipif(not VULKAN, reason="no Vulkan device here (.ci/run installs Mesa's lavapipe)")
# Odd sizes, both with width x height not a multiple of 4 (an ncnn.Mat wrapped around numpy goes wrong there).
SIZES = [(45, 37), (33, 17)]
TILE_PAD = 8  # small windows: lavapipe runs on the CPU


def image(width: int, height: int) -> DecodedImage:
    pixels = np.asarray(crop_of("astronaut.png", (90, 60, 90 + width, 60 + height)), dtype=np.float32) / 255.0
    return DecodedImage(pixels)


def upscale(store, settings: Settings, picture: DecodedImage, model: str):
    engine = Upscaler(store, settings)
    return engine.upscale(picture, engine.store.entry(model).scale, model=model, float_result=True)


def torch_fp32(store, picture: DecodedImage, model: str, tile: int) -> np.ndarray:
    settings = Settings(device="cpu", precision="fp32", backend="torch", tile=tile, tile_pad=TILE_PAD)
    return upscale(store, settings, picture, model).image.pixels


@pytest.mark.parametrize("model", ["realesr-animevideov3", "waifu2x-upconv7-anime-x2", "waifu2x-cunet-x1-noise1",
                                   "realcugan-x2-conservative", "realcugan-x4-no-denoise"])
@pytest.mark.parametrize("tile", [0, 16])  # one tile, several
@pytest.mark.parametrize("size", SIZES)
def test_ncnn_on_the_cpu_equals_torch_fp32(store, model, tile, size):
    picture = image(*size)
    settings = Settings(device="cpu", precision="fp32", backend="ncnn", tile=tile, tile_pad=TILE_PAD)
    result = upscale(store, settings, picture, model)
    made = result.provenance
    assert (made.backend, made.precision, made.device) == ("ncnn", "fp32", "cpu")
    assert made.tiles == (1 if tile == 0 else made.tiles) and (tile == 0 or made.tiles > 1)
    assert psnr(result.image.pixels, torch_fp32(store, picture, model, tile)) >= 90


def test_x4plus_on_ncnn_on_the_cpu_equals_torch_fp32(store):
    picture = image(*SIZES[1])
    settings = Settings(device="cpu", precision="fp32", backend="ncnn", tile=0)
    out = upscale(store, settings, picture, "realesrgan-x4plus").image.pixels
    assert psnr(out, torch_fp32(store, picture, "realesrgan-x4plus", 0)) >= 90


@needs_vulkan
@pytest.mark.parametrize("tile", [0, 24])
@pytest.mark.parametrize("size", SIZES)
def test_vulkan_equals_torch_fp32(store, tile, size):
    picture = image(*size)
    settings = Settings(device="vulkan:0", tile=tile, tile_pad=TILE_PAD)
    result = upscale(store, settings, picture, "realesr-animevideov3")
    made = result.provenance
    assert made.backend == "ncnn" and made.precision == "fp16" and made.device.startswith("vulkan:0 (")
    assert psnr(result.image.pixels, torch_fp32(store, picture, "realesr-animevideov3", tile)) >= 45


@needs_vulkan
def test_real_cugan_on_vulkan_shares_the_whole_image_means_across_tiles(store):
    picture = image(*SIZES[0])
    result = upscale(store, Settings(device="vulkan:0", tile=24, tile_pad=TILE_PAD), picture,
                     "realcugan-x2-no-denoise")
    assert result.provenance.tiles > 1
    reference = torch_fp32(store, picture, "realcugan-x2-no-denoise", 0)  # the whole image, untiled
    assert psnr(result.image.pixels, reference) >= 45


class _FailingExtractor:
    """An ncnn extractor that reports what ncnn reports when an allocation fails (a non-zero status)."""

    def __init__(self, extractor) -> None:
        self.extractor = extractor

    def input(self, name, mat):
        return self.extractor.input(name, mat)

    def extract(self, name):
        return -100, ncnn.Mat()


class _NetFailingAt:
    """Wraps the backend's ``ncnn.Net`` from the test side: the ``at``-th forward pass fails."""

    def __init__(self, net, at: int) -> None:
        self.net, self.at, self.calls = net, at, 0

    def create_extractor(self):
        self.calls += 1
        extractor = self.net.create_extractor()
        return _FailingExtractor(extractor) if self.calls == self.at + 1 else extractor


def test_out_of_memory_on_the_device_goes_on_with_smaller_tiles(store, engine_hooks):
    picture = image(*SIZES[0])
    engine = Upscaler(store, Settings(device="cpu", precision="fp32", backend="ncnn", tile=32, tile_pad=TILE_PAD))
    loaded = engine.load("realesr-animevideov3")
    loaded.module.net = _NetFailingAt(loaded.module.net, at=1)  # the second tile's allocation fails
    try:
        result = engine.upscale(picture, 4, model="realesr-animevideov3", float_result=True)
    finally:
        loaded.module.net = loaded.module.net.net
    assert result.provenance.tile == 16 and result.provenance.tiles > 4
    # torch, out of memory at the same tile through the tests' hook: the same plan, the same pixels
    engine_hooks(oom_at_tile=1)
    settings = Settings(device="cpu", precision="fp32", backend="torch", tile=32, tile_pad=TILE_PAD)
    reference = upscale(store, settings, picture, "realesr-animevideov3")
    assert reference.provenance.tiles == result.provenance.tiles
    assert psnr(result.image.pixels, reference.image.pixels) >= 90



def test_a_model_ncnn_cannot_run_is_refused_by_name(tmp_path):
    network = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    torch.save({"params_ema": network.state_dict()}, tmp_path / "my_model.pth")
    picture = image(*SIZES[1])
    for device in ["cpu", *(["vulkan:0"] if VULKAN else [])]:
        engine = Upscaler(None, Settings(weights_folder=str(tmp_path), device=device, backend="ncnn"))
        with pytest.raises(BackendUnavailableError, match=r"my_model cannot run on ncnn/Vulkan: it is a user check"):
            engine.upscale(picture, 4, model="my_model")
    # left to choose on the CPU, the checkpoint runs on torch: ncnn is not among its candidates
    auto = Upscaler(None, Settings(weights_folder=str(tmp_path), device="cpu"))
    calibration = Calibration(machine_key(), 1.0, None, None, "fp32", 1, 0.0)
    auto.calibration_record.parent.mkdir(parents=True, exist_ok=True)
    auto.calibration_record.write_text(json.dumps(asdict(calibration)))
    assert auto.upscale(picture, 4, model="my_model").provenance.backend.startswith("torch")
    figures = auto.choices.get(auto.store.key("my_model"))  # measured only where torch bf16 is native
    assert figures is None or set(figures.seconds) == {"fp32", "bf16"}


def test_auto_never_picks_a_cpu_vulkan_driver(monkeypatch):
    if not torch.cuda.is_available():
        assert devices.resolve_device("auto").type in ("cpu", "vulkan")
        if all(device.cpu for device in VULKAN):  # lavapipe only (or nothing): the CPU path
            assert devices.resolve_device("auto") == torch.device("cpu")
    lavapipe = VulkanDevice(0, "llvmpipe (LLVM 15.0.6, 256 bits)", True, 1024)
    radeon = VulkanDevice(1, "AMD Radeon RX 7600", False, 8192)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "vulkan_devices", lambda: [lavapipe])
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device("vulkan") == torch.device("vulkan", 0)  # named, it runs
    monkeypatch.setattr(devices, "vulkan_devices", lambda: [lavapipe, radeon])
    assert devices.resolve_device("auto") == torch.device("vulkan", 1)


@pytest.mark.parametrize("name", ["vulkan:7", "metal", "cuda:9"])
def test_an_unknown_device_gets_one_line_naming_those_here(name):
    with pytest.raises(InvalidOptionError) as error:
        devices.resolve_device(name)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"device {name!r}") and "this machine has: cpu" in message
    for device in VULKAN:
        assert f"vulkan:{device.index} ({device.name}" in message


def test_the_models_listing_names_every_device(store):
    listing = models_listing(Upscaler(store, Settings(device="cpu", precision="fp32")))
    assert listing["device"] == "cpu"
    assert listing["devices"] == ["cpu", *(f"cuda:{i} ({torch.cuda.get_device_name(i)})"
                                           for i in range(torch.cuda.device_count()))] + [str(d) for d in VULKAN]


@pytest.mark.parametrize(("ncnn_seconds", "ncnn_psnr", "chosen"), [
    ({"ncnn-fp32": 1.1, "ncnn-bf16": 0.95}, {"ncnn-fp32": 120.0, "ncnn-bf16": 50.0}, "fp32"),  # ncnn slower: torch
    ({"ncnn-fp32": 0.9, "ncnn-bf16": 0.8}, {"ncnn-fp32": 120.0, "ncnn-bf16": 50.0}, "ncnn-fp32"),  # bf16 not 1.2x
    ({"ncnn-fp32": 0.9, "ncnn-bf16": 0.5}, {"ncnn-fp32": 120.0, "ncnn-bf16": 39.0}, "ncnn-fp32"),  # bf16 unfaithful
    ({"ncnn-fp32": 0.9, "ncnn-bf16": 0.5}, {"ncnn-fp32": 120.0, "ncnn-bf16": 50.0}, "ncnn-bf16"),
    ({"ncnn-fp32": 0.98, "ncnn-bf16": 0.99}, {"ncnn-fp32": 120.0, "ncnn-bf16": 50.0}, "fp32"),  # within noise
    ({"bf16": 0.7, "ncnn-fp32": 0.75}, {"bf16": 50.0, "ncnn-fp32": 120.0}, "bf16"),  # ncnn beats fp32, not bf16
    ({"bf16": 0.7, "ncnn-fp32": 0.6}, {"bf16": 39.0, "ncnn-fp32": 120.0}, "ncnn-fp32"),  # bf16 unfaithful
])
def test_ncnn_is_taken_only_where_faithful_and_faster(ncnn_seconds, ncnn_psnr, chosen):
    """`fastest_faithful`, as the calibration and each model's figures use it; torch fp32 takes 1 s."""
    assert fastest_faithful({"fp32": 1.0, **ncnn_seconds}, ncnn_psnr, MIN_SPEEDUP, MIN_FAITHFUL_PSNR) == chosen
