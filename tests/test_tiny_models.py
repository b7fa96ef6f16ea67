"""Tiny networks saved, detected, loaded and tiled: the engine's own logic, without the weights wheel.

As spandrel and timm test their architectures: a variant small enough to run in milliseconds
(`num_block=1, num_feat=8`) with seeded random weights goes through the whole path a user's
checkpoint takes (a file in ``weights/`` -> recognised by its keys and shapes -> loaded -> tiled
inference), and must compute exactly what the network itself computes. The store here has no
shipped ncnn weights at all.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from esrgan.archs import RRDBNet, SRVGGNetCompact
from esrgan.errors import ModelNotFoundError
from esrgan.io.imageio import DecodedImage, read_image
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.tiling.plan import TileOptions, count_tiles
from esrgan.tiling.run import upscale_tiled
from tests.conftest import dataset_image

# name -> (constructor, arguments, context in input pixels that one output pixel depends on, at most)
TINY = {
    # 17 convolutions at input resolution, then 4 at 2x and 4x: 17 + 2 * 0.5 + 2 * 0.25 < 19.
    "tiny-rrdb-x4": (RRDBNet, {"num_feat": 8, "num_block": 1, "scale": 4}, 19),
    # The same body on a 2x2 pixel-unshuffled input: twice the reach, and sides must be even.
    "tiny-rrdb-x2": (RRDBNet, {"num_feat": 8, "num_block": 1, "scale": 2}, 38),
    # 4 convolutions at input resolution.
    "tiny-compact-x4": (SRVGGNetCompact, {"num_feat": 8, "num_conv": 2, "upscale": 4}, 4),
}


def tiny_network(name: str) -> torch.nn.Module:
    constructor, arguments, _ = TINY[name]
    torch.manual_seed(sum(map(ord, name)))
    network = constructor(**arguments).eval()
    if isinstance(network, RRDBNet):
        # Random weights leave an RRDBNet's output near zero, mostly clamped away: centre it on
        # mid-grey with some contrast, so that every comparison below compares real values.
        with torch.no_grad():
            probe = network(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
            mean, std = probe.mean(dim=(0, 2, 3)), probe.std(dim=(0, 2, 3))
            gain = 0.2 / std
            network.conv_last.weight.mul_(gain[:, None, None, None])
            network.conv_last.bias.copy_((network.conv_last.bias - mean) * gain + 0.5)
    return network


def save_checkpoint(network: torch.nn.Module, path) -> None:
    """BasicSR's layout for .pth (``params_ema`` around the state dict); a bare state dict for safetensors."""
    state = {k: v.contiguous() for k, v in network.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"params_ema": state}, path)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 64x80 real photo, (H, W, 3) float32 in [0, 1]."""
    return np.ascontiguousarray(read_image(dataset_image("astronaut_lr4.png")).pixels[16:80, 24:104])


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> ModelStore:
    """A weights folder holding every tiny network, once as .pth and once as .safetensors; no wheel."""
    folder = tmp_path_factory.mktemp("tiny-weights")
    for name in TINY:
        network = tiny_network(name)
        save_checkpoint(network, folder / f"{name}.pth")
        save_checkpoint(network, folder / f"{name}-st.safetensors")
    return ModelStore(folder, ncnn_dir=tmp_path_factory.mktemp("no-shipped-weights"))


def direct(name: str, image: np.ndarray) -> np.ndarray:
    """The network's own whole-image output, (H*s, W*s, 3) float32."""
    with torch.inference_mode():
        x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
        return tiny_network(name)(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()


def names_and_files():
    return [pytest.param(f"{name}{suffix}", name, id=f"{name}{suffix or '-pth'}")
            for name in TINY for suffix in ("", "-st")]


def test_only_the_checkpoints_in_the_folder_are_available(tiny_store):
    listed = {name for name in tiny_store.entries() if not name.startswith("dat-light-")}  # DAT: weights from a wheel
    assert listed == {f"{name}{suffix}" for name in TINY for suffix in ("", "-st")}
    assert not tiny_store.problems
    assert "realesrgan-x4plus" in tiny_store.unavailable()  # the shipped models say what they need


@pytest.mark.parametrize(("model", "name"), names_and_files())
def test_checkpoint_is_recognised_by_keys_and_shapes(tiny_store, model, name):
    entry = tiny_store.entry(model)
    scale = TINY[name][1].get("scale", TINY[name][1].get("upscale"))
    assert entry.scale == scale and entry.checkpoint is not None and entry.checkpoint.stem == model
    assert not entry.anime


@pytest.mark.parametrize(("model", "name"), names_and_files())
def test_loaded_network_computes_what_was_saved(tiny_store, model, name, photo):
    loaded = tiny_store.load(model)
    assert not loaded.module.training
    assert not any(p.requires_grad for p in loaded.module.parameters())
    with torch.inference_mode():
        out = loaded.module(torch.from_numpy(photo.transpose(2, 0, 1).copy())[None]).clamp(0, 1)
    torch.testing.assert_close(out[0].permute(1, 2, 0).numpy(), direct(name, photo), atol=1e-5, rtol=0)
    assert tiny_store.load(model) is loaded  # loaded once, then shared


@pytest.mark.parametrize("name", list(TINY))
def test_several_tiles_with_enough_context_equal_one_tile(tiny_store, name, photo):
    # With at least the network's reach as context (plus the blending band), tiling is invisible:
    # any error in tile placement, cropping or blend weights shows up here as a real difference.
    loaded = tiny_store.load(name)
    reach = TINY[name][2]
    tile = 32 if loaded.size_multiple == 1 else 48
    blend = tile // 4
    options = TileOptions(tile=tile, tile_pad=reach + blend + 2, pre_pad=0)
    assert count_tiles(*photo.shape[:2], options, loaded.size_multiple) >= 4
    kwargs = {"scale": loaded.entry.scale, "size_multiple": loaded.size_multiple}
    whole = upscale_tiled(loaded.module, photo, options=TileOptions(tile=0, pre_pad=0), **kwargs)
    tiled = upscale_tiled(loaded.module, photo, options=options, **kwargs)
    np.testing.assert_allclose(whole, direct(name, photo), atol=1e-6)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


@pytest.mark.parametrize("name", list(TINY))
def test_little_context_leaves_seams_that_the_blend_keeps_small(tiny_store, name, photo):
    loaded = tiny_store.load(name)
    kwargs = {"scale": loaded.entry.scale, "size_multiple": loaded.size_multiple}
    whole = upscale_tiled(loaded.module, photo, options=TileOptions(tile=0, pre_pad=0), **kwargs)
    tiled = upscale_tiled(loaded.module, photo, options=TileOptions(tile=16, tile_pad=2, pre_pad=0), **kwargs)
    difference = np.abs(tiled - whole)
    if TINY[name][2] > 2:  # a network that sees further than the context must differ somewhere ...
        assert difference.max() > 1e-3
    assert difference.mean() < 0.05  # ... but only a little, and only near the seams


def test_odd_sides_are_padded_to_the_networks_multiple(tiny_store, photo):
    odd = np.ascontiguousarray(photo[:37, :53])
    loaded = tiny_store.load("tiny-rrdb-x2")
    assert loaded.size_multiple % 2 == 0  # at least what its 2x2 pixel-unshuffle needs
    out = upscale_tiled(loaded.module, odd, scale=2, size_multiple=loaded.size_multiple,
                        options=TileOptions(tile=24, tile_pad=8))
    assert out.shape == (74, 106, 3)
    assert np.isfinite(out).all() and 0 < out.mean() < 1


def test_upscaler_runs_a_custom_model_by_name_with_gray_and_alpha(tiny_store, photo):
    options = Settings(device="cpu", precision="fp32", tile=32, tile_pad=24, pre_pad=0)
    result = Upscaler(tiny_store, options).upscale(DecodedImage(photo), 4, model="tiny-compact-x4", float_result=True)
    np.testing.assert_allclose(result.image.pixels, direct("tiny-compact-x4", photo), atol=1e-5)
    assert result.provenance.model == "tiny-compact-x4" and result.provenance.tiles > 1

    gray = photo.mean(axis=2, keepdims=True)
    alpha = np.linspace(0, 1, photo.shape[1], dtype=np.float32)[None, :, None].repeat(photo.shape[0], 0)
    whole = Upscaler(tiny_store, replace(options, tile=0))
    both = whole.upscale(DecodedImage(np.concatenate([gray, alpha], axis=2)), 2, model="tiny-rrdb-x2")
    assert both.image.pixels.shape == (128, 160, 2)
    expected = direct("tiny-rrdb-x2", np.repeat(gray, 3, axis=2)).mean(axis=2)
    np.testing.assert_allclose(both.image.pixels[..., 0], expected, atol=1e-5)
    assert np.abs(both.image.pixels[..., 1] - np.repeat(alpha, 2, 1).repeat(2, 0)[..., 0]).max() < 0.02


def test_a_file_that_is_no_model_is_skipped_and_named(tmp_path):
    torch.save({"params_ema": {"weight": torch.zeros(3, 3)}}, tmp_path / "notes.pth")
    save_checkpoint(tiny_network("tiny-compact-x4"), tmp_path / "fine.pth")
    store = ModelStore(tmp_path, ncnn_dir=tmp_path / "no-shipped-weights")
    assert {name for name in store.entries() if not name.startswith("dat-light-")} == {"fine"}
    assert "notes.pth" in store.problems
    with pytest.raises(ModelNotFoundError, match="notes"):
        store.entry("notes")
