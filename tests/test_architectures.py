"""The architecture list: a new architecture is one module and one line, and then it loads, tiles and
fine-tunes like the built-in ones. The made-up one lives in tests/tiny_arch.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from esrgan import archs
from esrgan.errors import WeightsError
from esrgan.io.imageio import DecodedImage
from esrgan.models import registry
from esrgan.models.detect import detect, load
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.tiling.plan import TileOptions
from esrgan.tiling.run import upscale_tiled
from esrgan.train.config import TrainConfig
from esrgan.train.loop import Trainer
from tests import tiny_arch
from tests.conftest import crop_of


@pytest.fixture
def tiny_listed(monkeypatch):
    """The architecture list with the tiny one added, for this test only."""
    monkeypatch.setattr(archs, "ARCHITECTURES", (*archs.ARCHITECTURES, tiny_arch.ARCHITECTURE))


@pytest.fixture
def checkpoint(tmp_path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    network = tiny_arch.TinyFold(num_feat=8, upscale=3).eval()
    path = tmp_path / "weights" / "tinyfold-x3.safetensors"
    path.parent.mkdir()
    save_file(network.state_dict(), str(path))
    return path, network


def test_an_unlisted_architecture_is_not_recognised(checkpoint):
    with pytest.raises(WeightsError):
        detect(checkpoint[1].state_dict())


def test_a_listed_architecture_is_detected_and_loaded(tiny_listed, checkpoint):
    _, network = checkpoint
    module, descriptor = load(network.state_dict())
    facts = (descriptor.arch, descriptor.scale, descriptor.size_multiple, descriptor.family)
    assert facts == ("tinyfold", 3, 2, "Tiny")
    assert dict(descriptor.arch_args) == {"channels": 3, "num_feat": 8, "upscale": 3} and descriptor.ours
    image = torch.rand(1, 3, 10, 14)
    with torch.inference_mode():
        torch.testing.assert_close(module.eval()(image), network(image), rtol=0, atol=0)


def test_a_listed_architecture_tiles_odd_images_through_the_upscaler(tiny_listed, checkpoint):
    path, network = checkpoint
    pixels = np.random.default_rng(1).random((23, 31, 3), dtype=np.float32)  # odd sides, multiple is 2
    store = ModelStore(path.parent, ncnn_dir=path.parent / "none")
    options = Settings(device="cpu", precision="fp32", tile=8, tile_pad=6)
    result = Upscaler(store, options).upscale(DecodedImage(pixels), 3, model=str(path), float_result=True)
    assert result.image.pixels.shape == (69, 93, 3) and result.provenance.tiles > 1
    whole = upscale_tiled(network, pixels, scale=3, size_multiple=2, options=TileOptions(tile=0))
    np.testing.assert_allclose(result.image.pixels, np.clip(whole, 0, 1), atol=1e-5)


def test_a_listed_architecture_fine_tunes_with_its_own_freeze_rule(tiny_listed, checkpoint, tmp_path):
    path, network = checkpoint
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    for index, name in enumerate(["astronaut.png", "coffee.png", "line_art.png", "rocket.png", "chelsea_head.png"]):
        crop_of(name, (8 * index, 8 * index, 8 * index + 48, 8 * index + 48)).save(hr_dir / f"{index}.png")
    config = TrainConfig(model=str(path), iters=2, patch=8, batch=2, perceptual_weight=0.0, val_every=2,
                         val_crop=24, device="cpu")
    trainer = Trainer(config, hr_dir, tmp_path / "run", store=ModelStore(path.parent, ncnn_dir=path.parent / "none"))
    assert trainer.arch.arch == "tinyfold" and trainer.scale == 3 and trainer.freeze_rule == "fold_in"
    exported = trainer.run(report=lambda line: None)
    after = trainer.net_g.state_dict()
    assert torch.equal(after["fold_in.weight"], network.state_dict()["fold_in.weight"])
    assert not torch.equal(after["fold_out.weight"], network.state_dict()["fold_out.weight"])
    saved = torch.load(exported, weights_only=True)["params_ema"]
    assert detect(saved).arch == "tinyfold"


def test_every_catalogue_model_names_a_listed_architecture_and_its_arguments():
    from spandrel import MAIN_REGISTRY

    for spec in registry.all_specs():
        if spec.arch.startswith("spandrel:"):  # built by spandrel from the checkpoint, no arguments here
            assert spec.arch.removeprefix("spandrel:") in MAIN_REGISTRY and not spec.arch_args, spec.name
            assert spec.ncnn_stem is None and spec.wheel_file is not None, spec.name
            continue
        architecture = archs.architecture(spec.arch)
        assert set(dict(spec.arch_args)) <= set(architecture.arguments(())) | {"scale"}, spec.name
        assert architecture.ncnn_state_dict is not None or spec.ncnn_stem is None, spec.name


def test_a_checkpoint_matches_the_catalogue_entry_it_stands_for():
    x4plus = registry.spec("realesrgan-x4plus")
    official = detect(archs.RRDBNet(num_block=23).state_dict())
    assert official.is_network(x4plus.arch, x4plus.arch_args)
    assert not official.is_network(x4plus.arch, registry.spec("realesrgan-x4plus-anime").arch_args)
    narrow = detect(archs.RRDBNet(num_block=23, num_feat=32).state_dict())
    assert not narrow.is_network(x4plus.arch, x4plus.arch_args)


def test_an_unknown_architecture_name_is_a_weights_error():
    with pytest.raises(WeightsError, match="known: rrdbnet"):
        archs.architecture("nonesuch")
    assert replace(TrainConfig(), model="x4plus").model_name == "realesrgan-x4plus"
