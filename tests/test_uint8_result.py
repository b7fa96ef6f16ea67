"""The 8-bit result made where the network ran (`run_plan(quantise=True)`, `esrgan.tiling.canvas`): bit for
bit the float result quantised as the encoders quantise it, in every way a tiled run can go, and
`Upscaler.upscale` uses it exactly when the result goes straight to 8 bits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import esrgan.tiling.canvas
from esrgan.errors import Cancelled, ImageTooLargeError
from esrgan.io.imageio import DecodedImage, decode, encode, to_uint8
from esrgan.io.resumable import MANIFEST, WorkStore, digest
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.tiling.plan import TileOptions, model_context, plan_for
from esrgan.tiling.run import run_plan
from esrgan.tiling.steps import steps_per_tile
from esrgan.tiling.tta import with_tta
from tests.conftest import crop_of, png_bytes, psnr
from tests.hooks import OutOfMemoryAt
from tests.test_tiny_models import TINY, save_checkpoint, tiny_network

MULTIPLE = {"tiny-rrdb-x4": 1, "tiny-compact-x4": 1, "tiny-rrdb-x2": 2}  # input sides the network needs
SCALE = {name: TINY[name][1].get("scale", TINY[name][1].get("upscale")) for name in MULTIPLE}
SIZES = [(37, 5), (23, 31), (61, 43)]  # thin, odd, unaligned
# Ways a tiled run can go: its options, and the tile at which it runs out of memory (-1: never).
OPTIONS = {
    "whole": (TileOptions(tile=0), -1),
    "blended": (TileOptions(tile=8, tile_pad=4), -1),
    "abutting": (TileOptions(tile=8, tile_pad=4, blend=0), -1),
    "batch": (TileOptions(tile=8, tile_pad=4, batch=3), -1),
    "fixed-prepad": (TileOptions(tile=8, tile_pad=6, pre_pad=3, fixed_window=True), -1),
    "oom-blended": (TileOptions(tile=8, tile_pad=4), 1),
    "oom-abutting": (TileOptions(tile=8, tile_pad=4, blend=0), 2),
}


def encoded(pixels: np.ndarray) -> np.ndarray:
    """What the pipeline and the encoders made of a float result: clipped, then `to_uint8`."""
    return to_uint8(np.clip(pixels, 0, 1))


def image_of(height: int, width: int) -> np.ndarray:
    return np.asarray(crop_of("coffee.png", (60, 70, 60 + width, 70 + height)), np.float32) / 255


def both(model, image, options, scale, multiple=1, oom_at=-1):
    """The float run and the byte run of the same plan (each out of memory at tile ``oom_at``)."""
    plan = plan_for(*image.shape[:2], options, multiple, model_context(model))

    def failing():
        return OutOfMemoryAt(oom_at) if oom_at >= 0 else None

    floats = run_plan(model, image, plan, scale=scale, options=options, before_forward=failing())
    return floats, run_plan(model, image, plan, scale=scale, options=options, quantise=True, before_forward=failing())


@pytest.mark.parametrize(("options", "oom_at"), OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("name", ["tiny-rrdb-x2", "tiny-compact-x4"])
def test_the_bytes_are_the_float_result_quantised_bit_for_bit(name, size, options, oom_at):
    model = tiny_network(name)
    floats, bytes_ = both(model, image_of(*size), options, SCALE[name], MULTIPLE[name], oom_at)
    assert bytes_.image.dtype == np.uint8 and floats.image.dtype == np.float32
    assert bytes_.plan == floats.plan
    np.testing.assert_array_equal(bytes_.image, encoded(floats.image))
    if options.tile:
        assert bytes_.plan.count > 1


def test_tta_bytes_are_the_tta_float_result_quantised():
    model = with_tta(tiny_network("tiny-compact-x4"))
    floats, bytes_ = both(model, image_of(23, 31), OPTIONS["blended"][0], 4)
    np.testing.assert_array_equal(bytes_.image, encoded(floats.image))


def test_se_synced_passes_give_the_same_bytes(store, tmp_path):
    """Real-CUGAN's tiles abut and share the whole image's SE means (kept states, and recomputed
    passes when a checkpoint is kept)."""
    model = store.load("realcugan-x2-no-denoise", "cpu").module
    image = image_of(50, 38)
    floats, bytes_ = both(model, image, TileOptions(tile=32), 2, 2)
    assert bytes_.plan.count > 1 and bytes_.plan.blend == 0
    np.testing.assert_array_equal(bytes_.image, encoded(floats.image))
    store_ = WorkStore.open(tmp_path / "work", {"input": digest(image)})
    plan = plan_for(50, 38, TileOptions(tile=32), 2, model_context(model))
    kept = run_plan(model, image, plan, scale=2, options=TileOptions(tile=32), checkpoint=store_, quantise=True)
    np.testing.assert_array_equal(kept.image, bytes_.image)


def interrupted(model, image, plan, options, folder, quantise: bool, tiles: int = 3) -> WorkStore:
    """A run stopped (as by a crash) after ``tiles`` tiles were kept in a checkpoint at ``folder``."""
    work = WorkStore.open(folder, {"input": digest(image)})
    seen: list[int] = []
    per_tile = steps_per_tile(model)
    with pytest.raises(Cancelled):
        run_plan(model, image, plan, scale=4, options=options, checkpoint=work, quantise=quantise,
                 progress=lambda d, t: seen.append(d), cancelled=lambda: bool(seen) and seen[-1] >= tiles * per_tile)
    return WorkStore.open(folder, {"input": digest(image)})


@pytest.mark.parametrize("blend", [0, None], ids=["abutting", "blended"])
@pytest.mark.parametrize(("first", "then"), [(True, True), (False, True), (True, False)],
                         ids=["bytes-then-bytes", "floats-then-bytes", "bytes-then-floats"])
def test_a_run_resumes_from_a_checkpoint_of_either_kind_without_mixing_them(tmp_path, blend, first, then):
    model = tiny_network("tiny-compact-x4")
    image = image_of(37, 29)
    options = TileOptions(tile=8, tile_pad=4, blend=blend)
    plan = plan_for(37, 29, options)
    floats = run_plan(model, image, plan, scale=4, options=options).image
    work = interrupted(model, image, plan, options, tmp_path / "work", quantise=first)
    resumed = run_plan(model, image, plan, scale=4, options=options, checkpoint=work, quantise=then)
    # Bytes of abutting tiles are their own units; blended runs keep float sums either way.
    same_units = first == then or blend is None
    assert resumed.resumed == (3 if same_units else 0)
    np.testing.assert_array_equal(resumed.image, encoded(floats) if then else floats)


@pytest.fixture(scope="module")
def tiny_upscaler(tmp_path_factory) -> Upscaler:
    folder = tmp_path_factory.mktemp("tiny-weights")
    for name in MULTIPLE:
        save_checkpoint(tiny_network(name), folder / f"{name}.pth")
    store = ModelStore(folder, ncnn_dir=tmp_path_factory.mktemp("no-shipped-weights"))
    return Upscaler(store, Settings(device="cpu", precision="fp32", tile=16, tile_pad=6))


def test_an_8_bit_rgb_photo_comes_back_as_the_bytes_its_png_would_hold(tiny_upscaler):
    image = decode(png_bytes(crop_of("coffee.png", (40, 50, 77, 91))))  # 41 x 37
    for model, scale in SCALE.items():
        fast = tiny_upscaler.upscale(image, scale, model=model)
        slow = tiny_upscaler.upscale(image, scale, model=model, float_result=True)
        assert fast.image.pixels.dtype == np.uint8 and slow.image.pixels.dtype == np.float32
        assert fast.provenance.tiles > 1
        np.testing.assert_array_equal(fast.image.pixels, encoded(slow.image.pixels))
        assert encode(fast.image, "png") == encode(slow.image, "png")  # the very same file
        assert encode(fast.image, "jpg") == encode(slow.image, "jpg")
        assert encode(fast.image, "webp") == encode(slow.image, "webp")


def test_a_float_job_never_takes_the_tiles_a_byte_job_left_in_its_checkpoint(tiny_upscaler, tmp_path):
    image = decode(png_bytes(crop_of("coffee.png", (40, 50, 89, 81))))
    folder = tmp_path / "job" / "work"
    seen: list[int] = []
    with pytest.raises(Cancelled):
        tiny_upscaler.upscale(image, 4, model="tiny-compact-x4", checkpoint=folder,
                              progress=lambda d, t: seen.append(d), cancelled=lambda: len(seen) >= 8)
    assert any(n.startswith("tile-") for n in WorkStore(folder, {}).names())
    assert json.loads((folder / MANIFEST).read_text())["bytes"] is True  # a float job's identity differs
    floats = tiny_upscaler.upscale(image, 4, model="tiny-compact-x4", checkpoint=folder, float_result=True)
    assert not folder.exists()
    assert floats.image.pixels.dtype == np.float32
    uninterrupted = tiny_upscaler.upscale(image, 4, model="tiny-compact-x4", float_result=True)
    np.testing.assert_array_equal(floats.image.pixels, uninterrupted.image.pixels)


@pytest.mark.parametrize("kind", ["16-bit", "alpha", "gray", "resampled"])
def test_other_results_stay_float(tiny_upscaler, kind):
    crop = crop_of("coffee.png", (40, 50, 63, 69))
    if kind == "16-bit":
        import cv2

        _, data = cv2.imencode(".png", (np.asarray(crop, np.uint16) * 257)[..., ::-1].copy())
        image = decode(data.tobytes())
    elif kind == "alpha":
        image = decode(png_bytes(crop.convert("RGBA")))
    elif kind == "gray":
        image = decode(png_bytes(crop.convert("L")))
    else:
        image = decode(png_bytes(crop))
    scale, model = (2, "tiny-rrdb-x4") if kind == "resampled" else (2, "tiny-rrdb-x2")
    result = tiny_upscaler.upscale(image, scale, model=model)
    assert result.image.pixels.dtype == np.float32
    assert (result.provenance.resample is not None) == (kind == "resampled")


def test_uint8_pixels_pass_through_every_consumer():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = DecodedImage(rgb)
    assert to_uint8(rgb) is rgb  # no copy
    np.testing.assert_array_equal(image.rgb(), rgb.astype(np.float32) / 255)  # what decode reads of the PNG
    assert image.rgb().dtype == np.float32
    again = decode(encode(image, "png"))
    np.testing.assert_array_equal(to_uint8(again.pixels), rgb)
    sixteen = decode(encode(DecodedImage(rgb, bit_depth=16), "png"))
    np.testing.assert_array_equal(to_uint8(sixteen.pixels), rgb)
    gray = DecodedImage(np.zeros((5, 7, 1), np.float32)).with_rgb(rgb)
    np.testing.assert_allclose(gray.pixels[..., 0], rgb.mean(axis=2) / 255, atol=1e-6)
    rgba = DecodedImage(np.zeros((5, 7, 4), np.float32)).with_rgb(rgb)
    assert rgba.pixels.dtype == np.float32
    np.testing.assert_array_equal(to_uint8(rgba.pixels[..., :3]), rgb)


def test_video_frames_get_the_bytes_of_the_float_path(tiny_upscaler):
    from esrgan.video.frames import frame_upscaler

    frame = np.asarray(crop_of("coffee.png", (10, 20, 43, 41)))
    out = frame_upscaler(tiny_upscaler, 4, model="tiny-compact-x4")(frame)
    expected = tiny_upscaler.upscale(DecodedImage(frame.astype(np.float32) / 255.0), 4, model="tiny-compact-x4",
                                     float_result=True)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, encoded(expected.image.pixels))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("canvas", ["device", "host"])
@pytest.mark.parametrize("blend", [0, None], ids=["abutting", "blended"])
def test_cuda_bytes_are_faithful_and_land_in_pinned_memory(monkeypatch, canvas, blend):
    if canvas == "host":  # as when the canvas does not fit the GPU: tiles cross by pinned copies
        monkeypatch.setattr(esrgan.tiling.canvas, "new_canvas", lambda h, w, device, dtype=torch.float32: np.zeros(
            (h, w, 3), np.uint8 if dtype == torch.uint8 else np.float32))
    image = image_of(61, 43)
    options = TileOptions(tile=16, tile_pad=6, blend=blend)
    plan = plan_for(61, 43, options)
    reference = run_plan(tiny_network("tiny-compact-x4"), image, plan, scale=4, options=options).image
    model = tiny_network("tiny-compact-x4").to("cuda", torch.float16)
    out = run_plan(model, image, plan, scale=4, options=options, device="cuda", dtype=torch.float16, quantise=True)
    assert out.image.dtype == np.uint8 and out.plan.count > 4
    assert psnr(out.image, reference) >= 40
    assert torch.from_numpy(out.image).is_pinned() == (canvas == "device")  # the one copy at the end


@pytest.mark.parametrize("quantise", [False, True], ids=["float", "bytes"])
@pytest.mark.parametrize("blend", [None, 0], ids=["blended", "abutting"])
def test_out_of_memory_while_a_batch_goes_onto_the_canvas_ends_the_run_instead_of_adding_tiles_twice(
        monkeypatch, quantise, blend):
    """The first tile of a batch of 3 is on the canvas when the second one's put fails: halving and
    running the batch again would add the first twice (wrong pixels), so the run ends with a typed
    error. Out of memory in the forward pass still halves the tiles (the "oom-*" cases above)."""
    put, calls = esrgan.tiling.canvas.Canvas.put, []

    def failing_put(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("test: no room for the canvas's band sums")
        return put(self, *args, **kwargs)

    monkeypatch.setattr(esrgan.tiling.canvas.Canvas, "put", failing_put)
    options = TileOptions(tile=8, tile_pad=4, batch=3, **({} if blend is None else {"blend": blend}))
    model = tiny_network("tiny-compact-x4")
    image = image_of(23, 31)
    plan = plan_for(*image.shape[:2], options, 1, model_context(model))
    with pytest.raises(ImageTooLargeError, match="out of memory while putting the result together"):
        run_plan(model, image, plan, scale=4, options=options, quantise=quantise)
    assert len(calls) == 2
