"""End to end through the engine with real weights on small real images."""

from __future__ import annotations

import io
import json
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from esrgan.errors import Cancelled, ImageTooLargeError
from esrgan.io.imageio import DecodedImage, decode, encode
from esrgan.models import registry
from esrgan.models.store import ModelStore, ncnn_models_dir
from esrgan.pipeline import Upscaler
from esrgan.runtime import choose as runtime
from esrgan.runtime.recheck import RECHECK_STREAK
from esrgan.settings import Settings
from tests.conftest import crop_of, png_bytes, psnr


def ncnn_whole_image(model: str, rgb: np.ndarray) -> np.ndarray:
    """The original ncnn model's output for the whole (H, W, 3) image, in fp32: the reference."""
    ncnn = pytest.importorskip("ncnn")
    stem = registry.spec(model).ncnn_stem
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, option, False)
    net.load_param(str(ncnn_models_dir() / f"{stem}.param"))
    net.load_model(str(ncnn_models_dir() / f"{stem}.bin"))
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1))  # ncnn.Mat borrows this memory: keep it alive
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(planes))
    _, out = extractor.extract("output")
    return np.clip(np.array(out), 0, 1).transpose(1, 2, 0)


@pytest.mark.parametrize(("box", "tile", "tiles"), [((100, 100, 148, 148), None, 1), ((90, 60, 186, 92), 32, 3)])
def test_the_default_output_is_the_official_whole_image_output(store, box, tile, tiles):
    """The pipeline's defaults (no pre-padding, fp32 here) against the ncnn runtime on the whole image."""
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32", tile=tile))
    photo = np.asarray(crop_of("coffee.png", box), np.float32) / 255
    result = upscaler.upscale(DecodedImage(photo), 4, float_result=True)
    assert result.provenance.tiles == tiles
    reference = ncnn_whole_image("realesrgan-x4plus", photo)
    assert result.image.pixels.shape == reference.shape
    assert psnr(result.image.pixels, reference) >= 50


def test_4x_photo_looks_like_the_input_but_sharper(upscaler, small_photo):
    result = upscaler.upscale(DecodedImage(small_photo), 4, float_result=True)
    out = result.image.pixels
    assert out.shape == (128, 160, 3)
    # Downscaled back, the result must agree with the input (it is the same photo) ...
    back = np.asarray(Image.fromarray((out * 255).astype(np.uint8)).resize((40, 32), Image.BICUBIC)) / 255
    assert psnr(back, small_photo) > 25
    # ... and it must not be a blurry bicubic enlargement: Real-ESRGAN restores edges.
    bicubic = np.asarray(Image.fromarray((small_photo * 255).astype(np.uint8)).resize((160, 128), Image.BICUBIC)) / 255
    assert np.abs(np.diff(out, axis=1)).mean() > 1.1 * np.abs(np.diff(bicubic, axis=1)).mean()
    p = result.provenance
    assert (p.model, p.native_scale, p.scale, p.resample, p.precision) == ("realesrgan-x4plus", 4, 4, None, "fp32")


def test_2x_anime_uses_the_native_2x_anime_model(upscaler):
    art = decode(png_bytes(crop_of("line_art.png", (40, 40, 72, 64))))
    result = upscaler.upscale(art, 2, anime=True)
    assert result.image.pixels.shape == (48, 64, 3)
    assert result.provenance.model == "realcugan-x2-no-denoise"
    assert result.provenance.resample is None


def test_alpha_is_upscaled_not_dropped(upscaler):
    rgba = crop_of("coffee.png", (100, 100, 124, 120), "RGBA")
    alpha = np.zeros((20, 24), np.uint8)
    alpha[:, 12:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    result = upscaler.upscale(decode(png_bytes(rgba)), 2, model="realesr-animevideov3")
    out = result.image.pixels
    assert out.shape == (40, 48, 4)
    assert out[:, :20, 3].max() < 0.05 and out[:, 28:, 3].min() > 0.95
    with Image.open(io.BytesIO(encode(result.image, "png"))) as png:
        assert png.mode == "RGBA" and png.size == (48, 40)


def test_grayscale_stays_grayscale(upscaler):
    gray = decode(png_bytes(crop_of("camera.png", (0, 0, 20, 16), "L")))
    result = upscaler.upscale(gray, 2, model="realesr-animevideov3")
    assert result.image.pixels.shape == (32, 40, 1)
    with Image.open(io.BytesIO(encode(result.image, "png"))) as png:
        assert png.mode == "L"


def test_16bit_input_gives_16bit_output(upscaler):
    import cv2

    crop = np.asarray(crop_of("chelsea_head.png", (60, 60, 76, 72)), np.uint16) * 257
    _, data = cv2.imencode(".png", np.ascontiguousarray(crop[..., ::-1]))
    result = upscaler.upscale(decode(data.tobytes()), 2, model="realesr-animevideov3")
    again = cv2.imdecode(np.frombuffer(encode(result.image, "png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert again.dtype == np.uint16 and again.shape == (24, 32, 3)
    assert len(np.unique(again)) > 256  # really uses the 16 bits


def test_output_pixel_limit_is_checked_before_any_work(store):
    upscaler = Upscaler(store, Settings(device="cpu", max_output_pixels=100_000))
    with pytest.raises(ImageTooLargeError, match=r"400x400 .* at most 6.32x"):
        upscaler.upscale(DecodedImage(np.zeros((50, 50, 3), np.float32)), 8)
    with pytest.raises(ImageTooLargeError, match="crop or shrink"):  # no scale would help: say so
        upscaler.upscale(DecodedImage(np.zeros((400, 300, 3), np.float32)), 2)


def test_tiny_images_upscale(upscaler):
    for shape in [(1, 1, 3), (1, 40, 3)]:
        out = upscaler.upscale(DecodedImage(np.full(shape, 0.5, np.float32)), 2, model="realesr-animevideov3")
        assert out.image.pixels.shape == (shape[0] * 2, shape[1] * 2, 3)


def test_a_one_tile_job_reports_many_steps_and_cancels_within_one(upscaler):
    image = DecodedImage(np.full((12, 16, 3), 0.4, np.float32))
    stages, seen = [], []
    result = upscaler.upscale(image, 4, progress=lambda d, t: seen.append((d, t)), stage=stages.append)
    assert result.provenance.tiles == 1
    assert stages == ["loading", "upscaling"]  # the precision is forced: nothing to measure
    assert len(seen) == 24 and seen[-1] == (24, 24)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    steps = []
    with pytest.raises(Cancelled):
        upscaler.upscale(image, 4, progress=lambda d, t: steps.append(d), cancelled=lambda: len(steps) >= 4)
    assert steps == [1, 2, 3, 4]


def test_calibrated_says_whether_the_next_job_measures_the_cpu_first(tmp_path):
    fresh = Upscaler(ModelStore(tmp_path), Settings(device="cpu"))
    assert fresh.calibrated is False
    assert Upscaler(ModelStore(tmp_path), Settings(device="cpu", precision="fp32")).calibrated
    record = fresh.calibration_record
    record.parent.mkdir(parents=True)
    saved = runtime.Calibration(runtime.machine_key(), 1.0, None, None, "fp32", 3, 0.0)
    record.write_text(json.dumps(asdict(saved)))
    again = Upscaler(ModelStore(tmp_path), Settings(device="cpu"))
    assert again.calibrated and again.runtime.precision == "fp32"
    # Jobs far slower than the record said make a new measurement due only several in a row, and
    # it is never made by a job: the next job still runs with the recorded choice at once.
    promised = again.runtime.seconds_per_pixel
    pixels = runtime.RECHECK_MIN_PIXELS * 4
    slow, fine = promised * pixels * 20, promised * pixels * 1.5
    x4plus = runtime.CALIBRATION_MODEL
    assert not again.check_calibration(x4plus, fine, pixels)
    assert not again.check_calibration(x4plus, slow, pixels)  # one slow job says little
    assert not again.check_calibration(x4plus, slow, pixels)
    assert not again.check_calibration(x4plus, fine, pixels)  # ... and a normal one starts the count over
    assert not again.check_calibration(x4plus, slow, 16)  # a tiny job tells nothing either way
    assert not again.check_calibration("realesr-animevideov3", slow, pixels)
    assert [again.check_calibration(x4plus, slow, pixels) for _ in range(RECHECK_STREAK)] == [False, False, True]
    assert again.calibrated  # due, yet nobody waits for it
    again.watch.load = lambda: 2.0  # a loaded machine: not now
    assert again.recalibrate_if_due() is False and again.watch.started_at is None
    assert again.watch.due


def test_work_pixels_are_what_the_tiled_run_processes(store):
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32"))
    assert upscaler.work_pixels(2048, 1, "realesrgan-x4plus") == 2048  # a thin strip: one long tile
    assert upscaler.work_pixels(45, 45, "realesrgan-x4plus") == 2025
    assert upscaler.work_pixels(1000, 1000, "realesrgan-x4plus") > 1.2e6  # 9 tiles with their context


def test_settings_take_text_values_in_order_and_refuse_unknown_names(tmp_path):
    base = Settings()
    layered = base.updated({"tile": "32", "backend": "torch", "weights_folder": str(tmp_path)}).updated(
        {"tile": None, "device": "cpu", "max_output_pixels": 90000})
    assert (layered.tile, layered.backend, layered.device, layered.max_output_pixels) == (32, "torch", "cpu", 90000)
    assert layered.weights_folder == tmp_path and base.tile is None  # frozen: a new object each time
    assert layered.updated({"tile": ""}).tile is None  # "" is "chosen by device"
    with pytest.raises(TypeError, match="no such engine setting: tiel"):
        base.updated({"tiel": 32})
    assert Upscaler(None, Settings(weights_folder=tmp_path)).store.weights_dir == tmp_path


def test_rates_are_learned_from_runs_recorded_and_used_for_estimates(tmp_path, store):
    from esrgan.models.keys import ModelKey
    from esrgan.runtime.rates import RATES_FILE, RateStore

    rates, m = RateStore(tmp_path / RATES_FILE), ModelKey("m")
    assert rates.get(m) is None
    assert rates.learn(m, 2.0, 1000) == pytest.approx(2e-3)
    assert rates.learn(m, 4.0, 1000) == pytest.approx(3e-3)  # one slow run only half counts
    rates.record(m, 1e-3, "cpu", "fp32")
    assert RateStore(tmp_path / RATES_FILE).get(m) == pytest.approx(1e-3)  # kept across restarts
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32"))
    model = "realesr-animevideov3"
    upscaler.upscale(DecodedImage(np.full((9, 13, 3), 0.5, np.float32)), 4, model=model)
    rate = upscaler.rates.get(ModelKey(model))
    assert rate is not None and rate > 0  # the engine learns from its own runs
    estimate = upscaler.estimate_seconds(model, 30, 20)
    assert estimate == pytest.approx(rate * upscaler.work_pixels(30, 20, model))


def test_work_slowed_on_purpose_is_learned_as_a_slow_machines_rate(store, engine_hooks):
    """The tests' step delay plays a slow machine: the engine learns the rate it really ran at, so
    the next estimate counts the slowed steps (a page then shows the time a slowed job takes),
    and never more than the run took."""
    import time

    delay = 0.05
    slowed = engine_hooks(delay=delay)
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32", tile=16))
    photo = np.asarray(crop_of("coffee.png", (3, 5, 40, 26)), np.float32) / 255  # 37x21: 6 tiles of 16
    totals = []
    started = time.perf_counter()
    upscaler.upscale(DecodedImage(photo), 2, model="realesr-animevideov3", progress=lambda d, t: totals.append(t))
    elapsed = time.perf_counter() - started
    slept = slowed.delay * totals[-1]
    after = upscaler.estimate_seconds("realesr-animevideov3", 37, 21)
    assert totals[-1] == 6 * 19 and slept <= after <= elapsed
