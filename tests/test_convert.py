"""The shipped ncnn weights become official-key state dicts that compute what ncnn computes."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import torch

from esrgan.archs import RRDBNet, SRVGGNetCompact
from esrgan.archs.ncnn import parse_param
from esrgan.errors import WeightsError
from esrgan.models import registry
from esrgan.models.convert import convert_ncnn
from esrgan.models.store import ModelStore, ncnn_models_dir
from tests.conftest import psnr

MODELS = ncnn_models_dir()


def files(stem: str):
    return MODELS / f"{stem}.param", MODELS / f"{stem}.bin"


def test_x4plus_converts_to_the_official_layout_and_size():
    state = convert_ncnn(*files("REALESRGAN_X4PLUS_UP4X"), "rrdbnet")
    assert sum(t.numel() for t in state.values()) == 16_697_987
    assert {"conv_first.weight", "body.22.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight",
            "conv_up2.weight", "conv_hr.weight", "conv_last.bias"} <= state.keys()
    RRDBNet(num_block=23).load_state_dict(state, strict=True)


def test_anime_and_compact_models_load_strictly():
    RRDBNet(num_block=6).load_state_dict(
        convert_ncnn(*files("REALESRGAN_X4PLUSANIME_UP4X"), "rrdbnet"), strict=True)
    compact = convert_ncnn(*files("REALESRGAN_ANIMAVIDEOV3_UP4X"), "srvgg")
    SRVGGNetCompact(num_conv=16, upscale=4).load_state_dict(compact, strict=True)
    assert compact["body.1.weight"].shape == (64,)  # PReLU slopes


def test_truncated_or_padded_bin_is_refused(tmp_path):
    param, weights = files("REALESRGAN_ANIMAVIDEOV3_UP4X")
    data = weights.read_bytes()
    for name, blob in {"short": data[:-4], "long": data + b"\0\0\0\0"}.items():
        broken = tmp_path / f"{name}.bin"
        broken.write_bytes(blob)
        with pytest.raises(WeightsError):
            convert_ncnn(param, broken, "srvgg")


def test_graph_that_is_not_the_expected_architecture_is_refused():
    with pytest.raises(WeightsError, match="RRDBNet|activation|upsample"):
        convert_ncnn(*files("REALESRGAN_ANIMAVIDEOV3_UP4X"), "rrdbnet")
    with pytest.raises(WeightsError, match="magic"):
        parse_param("not a param file\n")


@pytest.mark.parametrize("stem", ["REALESRGAN_X4PLUS_UP4X", "REALESRGAN_X4PLUSANIME_UP4X"])
def test_converted_model_matches_the_original_ncnn_model(stem, store, small_photo):
    ncnn = pytest.importorskip("ncnn")
    spec = next(s for s in registry.all_specs() if s.ncnn_stem == stem)
    model = store.load(spec.name, "cpu").module
    x = np.ascontiguousarray(small_photo.transpose(2, 0, 1))
    with torch.inference_mode():
        ours = model(torch.from_numpy(x)[None])[0].clamp(0, 1).numpy()
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.load_param(str(files(stem)[0]))
    net.load_model(str(files(stem)[1]))
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(x))
    _, out = extractor.extract("output")
    reference = np.clip(np.array(out), 0, 1)
    assert ours.shape == reference.shape == (3, 128, 160)
    assert psnr(ours, reference) >= 40


def test_converted_cache_is_checked_and_rebuilt_when_corrupt(tmp_path, caplog):
    store = ModelStore(tmp_path)
    spec = registry.spec("realesr-animevideov3")
    first = store.state_dict(spec.name)
    cached = store.converted_path(spec)
    record = json.loads(cached.with_suffix(".sha256").read_text())
    assert len(record["sha256"]) == 64
    data = bytearray(cached.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the tensor data
    cached.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = ModelStore(tmp_path).state_dict(spec.name)
    assert "rebuilding" in caplog.text
    torch.testing.assert_close(again, first)
    rebuilt = json.loads(cached.with_suffix(".sha256").read_text())
    assert rebuilt["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert rebuilt["source_sha256"] == record["source_sha256"]
    assert not list(cached.parent.glob("*.part"))
