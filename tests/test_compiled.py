"""The opt-in compiled backend (esrgan/runtime/compiled.py): same pictures as eager, kernels cached on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esrgan.archs import RRDBNet
from esrgan.io.imageio import DecodedImage
from esrgan.pipeline import Upscaler
from esrgan.runtime import compiled
from esrgan.settings import Settings
from esrgan.tiling.plan import TileOptions
from esrgan.tiling.run import upscale_tiled
from tests.conftest import psnr


def tiny_rrdbnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return RRDBNet(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4).eval()


def test_compiled_tiles_match_eager_on_a_real_photo(small_photo, tmp_path):
    model = tiny_rrdbnet()
    tiling = TileOptions(tile=16, tile_pad=4, pre_pad=2, fixed_window=True)
    wrapper = compiled.compile_for_tiles(model, model="tiny", scale=4, tile=16, tile_pad=4, size_multiple=1,
                                         batch=1, weights_dir=tmp_path)
    eager = upscale_tiled(model, small_photo, scale=4, options=tiling)
    fast = upscale_tiled(wrapper, small_photo, scale=4, options=tiling)
    assert fast.shape == eager.shape == (small_photo.shape[0] * 4, small_photo.shape[1] * 4, 3)
    # the same windows, nothing padded: the compiled kernels give the eager picture
    assert psnr(fast, eager) >= 80
    # and edge windows moved inward only add context: close to the plain tiling too
    plain = upscale_tiled(model, small_photo, scale=4, options=TileOptions(tile=16, tile_pad=4, pre_pad=2))
    assert psnr(fast, plain) >= 40
    assert len(wrapper._warm) == 1  # every tile ran through one compiled shape
    assert any(wrapper.cache.rglob("*")), "inductor wrote nothing to the cache folder"
    assert wrapper.cache.is_relative_to(tmp_path / "converted" / "compiled")


def test_compiled_same_shape_is_exact_to_eager(small_photo, tmp_path):
    model = tiny_rrdbnet()
    x = torch.from_numpy(np.ascontiguousarray(small_photo[:24, :24].transpose(2, 0, 1)))[None]
    wrapper = compiled.compile_for_tiles(model, model="tiny", scale=4, tile=0, tile_pad=0, size_multiple=1,
                                         batch=1, weights_dir=tmp_path)
    with torch.inference_mode():
        torch.testing.assert_close(wrapper(x), model(x), atol=1e-4, rtol=1e-4)


def test_cache_folder_is_keyed_by_tile_precision_and_device(tmp_path):
    cpu = torch.device("cpu")
    base = compiled.cache_dir(tmp_path, "realesrgan-x4plus", 432, 1, torch.float32, cpu)
    assert base != compiled.cache_dir(tmp_path, "realesrgan-x4plus", 304, 1, torch.float32, cpu)
    assert base != compiled.cache_dir(tmp_path, "realesrgan-x4plus", 432, 4, torch.float32, cpu)
    assert base != compiled.cache_dir(tmp_path, "realesrgan-x4plus", 432, 1, torch.bfloat16, cpu)
    assert base != compiled.cache_dir(tmp_path, "realesr-animevideov3", 432, 1, torch.float32, cpu)
    assert base == compiled.cache_dir(tmp_path, "realesrgan-x4plus", 432, 1, torch.float32, cpu)


def test_only_the_compiled_backend_compiles(monkeypatch, store):
    monkeypatch.setenv("REMASTER_BACKEND", "compiled")  # the engine reads no setting from the environment
    loaded = store.load("realesr-animevideov3")
    assert compiled.module_for(loaded, TileOptions(), "auto", store.weights_dir) is loaded.module
    assert compiled.module_for(loaded, TileOptions(), "torch-cl", store.weights_dir) is loaded.module
    assert isinstance(compiled.module_for(loaded, TileOptions(), "compiled", store.weights_dir), compiled.CompiledModel)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_fp16_on_cuda_stays_faithful_to_cpu_fp32(store, small_photo):
    reference = Upscaler(store, Settings(device="cpu", precision="fp32")).upscale(
        DecodedImage(small_photo), 4, model="realesrgan-x4plus")
    fast = Upscaler(store, Settings(device="cuda", precision="fp16", backend="compiled", tile=16)).upscale(
        DecodedImage(small_photo), 4, model="realesrgan-x4plus")
    assert fast.provenance.precision == "fp16"
    assert psnr(fast.image.pixels, reference.image.pixels) >= 40
