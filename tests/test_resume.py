"""Long work survives: finished tiles kept in a folder and resumed after a crash, out-of-memory errors
that halve the tile without losing finished ones, and the resumable-work store itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from esrgan.errors import Cancelled
from esrgan.io.imageio import DecodedImage
from esrgan.io.resumable import WorkStore, digest
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.tiling.plan import TileOptions, model_context, plan_for
from esrgan.tiling.run import run_plan, upscale_tiled
from tests.conftest import crop_of, psnr


class TinySR(nn.Module):
    """A 2x network with a 3 px reach: tiles with enough context equal the whole image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1),
                                  nn.Conv2d(8, 12, 3, padding=1))

    def forward(self, x):
        return F_pixel_shuffle(torch.sigmoid(self.body(x)))


def F_pixel_shuffle(x):  # noqa: N802
    return nn.functional.pixel_shuffle(x, 2)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(crop_of("Set5/bird.png", (30, 40, 107, 99)), dtype=np.float32) / 255.0  # 59 x 77


OPTIONS = TileOptions(tile=24, tile_pad=6)


def stop_after(tiles: int, per_tile: int):
    """A cancel hook that stops the run once ``tiles`` tiles have been stored (a crash, for the store)."""
    seen = []
    return seen, (lambda: bool(seen) and seen[-1] >= tiles * per_tile)


def test_an_interrupted_run_resumes_at_the_first_unfinished_tile_and_equals_an_uninterrupted_one(tmp_path, photo):
    model = TinySR().eval()
    plan = plan_for(*photo.shape[:2], OPTIONS)
    whole = run_plan(model, photo, plan, scale=2, options=OPTIONS).image
    per_tile = 4  # three convolutions of the body, and the storing
    seen, stop = stop_after(5, per_tile)
    store = WorkStore.open(tmp_path / "job", {"input": digest(photo)})
    with pytest.raises(Cancelled):
        run_plan(model, photo, plan, scale=2, options=OPTIONS, checkpoint=store,
                 progress=lambda d, t: seen.append(d), cancelled=stop)
    assert sum(name.startswith("tile-") for name in store.names()) == 5

    first_forward = []
    again = WorkStore.open(tmp_path / "job", {"input": digest(photo)})
    progress = []
    resumed = run_plan(model, photo, plan, scale=2, options=OPTIONS, checkpoint=again,
                       progress=lambda d, t: progress.append((d, t)),
                       before_forward=lambda group: first_forward.append(progress[-1][0] if progress else 0))
    assert resumed.resumed == 5 and plan.count == 12
    assert first_forward[0] == 5 * per_tile  # progress went on from the finished tiles
    assert progress[-1] == (12 * per_tile, 12 * per_tile)
    np.testing.assert_array_equal(resumed.image, whole)  # bit for bit
    assert psnr(whole, upscale_tiled(model, photo, scale=2, options=TileOptions(tile=0))) >= 50


def test_another_work_in_the_folder_is_never_resumed(tmp_path, photo):
    model = TinySR().eval()
    plan = plan_for(*photo.shape[:2], OPTIONS)
    store = WorkStore.open(tmp_path / "job", {"input": digest(photo)})
    run_plan(model, photo, plan, scale=2, options=OPTIONS, checkpoint=store)
    changed = photo.copy()
    changed[0, 0, 0] += 0.5
    stale = WorkStore.open(tmp_path / "job", {"input": digest(changed)})
    assert stale.names() == []
    result = run_plan(model, changed, plan, scale=2, options=OPTIONS, checkpoint=stale)
    assert result.resumed == 0


def test_a_synced_real_cugan_run_resumes_mid_pass_and_equals_an_uninterrupted_one(tmp_path, store):
    model = store.load("realcugan-x2-no-denoise", "cpu").module
    image = np.asarray(crop_of("Set14/comic.png", (11, 5, 81, 55)), dtype=np.float32) / 255.0  # 50 x 70
    options = TileOptions(tile=32)
    plan = plan_for(50, 70, options, 2, model_context(model))
    whole = run_plan(model, image, plan, scale=2, options=options).image
    passes = len(model.se_blocks) + 1
    seen = []
    work = WorkStore.open(tmp_path / "job", {"input": digest(image)})
    # Real-CUGAN has no body blocks: the cancel is polled once per tile, when the tile's step comes,
    # so the second tile of the third pass is finished (and kept) when the stop is seen.
    with pytest.raises(Cancelled):
        run_plan(model, image, plan, scale=2, options=options, checkpoint=work,
                 progress=lambda d, t: seen.append(d), cancelled=lambda: bool(seen) and seen[-1] >= 2 * 6 + 1)
    kept = WorkStore.open(tmp_path / "job", {"input": digest(image)}).names()
    assert sum(n.startswith("se2-") for n in kept) == 2 and not any(n.startswith("tile-") for n in kept)
    ran = []
    resumed = run_plan(model, image, plan, scale=2, options=options, checkpoint=work,
                       before_forward=lambda group: ran.append(group))
    assert len(ran) == plan.count * passes - (2 * 6 + 2)  # only the unfinished work ran again
    np.testing.assert_array_equal(resumed.image, whole)


def test_the_engine_resumes_a_job_from_its_checkpoint_folder_and_removes_it_when_done(tmp_path, store, photo):
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32", tile=32))
    image = DecodedImage(photo[:40, :70])
    uninterrupted = upscaler.upscale(image, 2, model="realesr-animevideov3").image.pixels
    folder = tmp_path / "job-1" / "work"
    seen = []
    with pytest.raises(Cancelled):
        upscaler.upscale(image, 2, model="realesr-animevideov3", checkpoint=folder,
                         progress=lambda d, t: seen.append(d), cancelled=lambda: len(seen) >= 19 + 3)
    assert sum(n.startswith("tile-") for n in WorkStore(folder, {}).names()) == 1
    result = upscaler.upscale(image, 2, model="realesr-animevideov3", checkpoint=folder)
    np.testing.assert_array_equal(result.image.pixels, uninterrupted)
    assert not folder.exists()


@pytest.mark.parametrize("at", [0, 3])
def test_out_of_memory_halves_the_unfinished_tiles_and_keeps_the_finished_ones(photo, at):
    model = TinySR().eval()
    plan = plan_for(*photo.shape[:2], OPTIONS)
    whole = upscale_tiled(model, photo, scale=2, options=TileOptions(tile=0))
    calls = []

    def fail_once(group):
        calls.append(group)
        if len(calls) == at + 1:
            raise torch.OutOfMemoryError("test: out of memory at a chosen tile")

    progress = []
    result = run_plan(model, photo, plan, scale=2, options=OPTIONS, before_forward=fail_once,
                      progress=lambda d, t: progress.append((d, t)))
    assert result.plan.tile == 12 and result.plan.tiles[:at] == plan.tiles[:at]  # finished tiles kept
    assert result.plan.count > plan.count
    assert len(calls) == result.plan.count + 1  # nothing finished ran twice
    assert psnr(result.image, whole) >= 50
    done = [d for d, _ in progress]
    assert done == sorted(done) and progress[-1][0] == progress[-1][1]


def test_out_of_memory_in_a_whole_image_real_cugan_run_still_equals_the_whole_image(store):
    model = store.load("realcugan-x2-no-denoise", "cpu").module
    image = np.asarray(crop_of("Set14/comic.png", (0, 0, 45, 38)), dtype=np.float32) / 255.0
    options = TileOptions(tile=0)
    whole = upscale_tiled(model, image, scale=2, size_multiple=2, options=options)
    failed = []

    def fail_first(group):
        if not failed:
            failed.append(group)
            raise torch.OutOfMemoryError("test")

    plan = plan_for(38, 45, options, 2, model_context(model))
    result = run_plan(model, image, plan, scale=2, options=options, before_forward=fail_first)
    assert result.plan.count == 4  # halved once: the SE means were then synced over the four
    assert psnr(result.image, whole) >= 60


def test_out_of_memory_with_tiles_that_cannot_shrink_is_raised(photo):
    def always(group):
        raise torch.OutOfMemoryError("test")

    with pytest.raises(torch.OutOfMemoryError):
        run_plan(TinySR().eval(), photo, plan_for(*photo.shape[:2], OPTIONS), scale=2, options=OPTIONS,
                 before_forward=always)


def test_the_store_writes_atomically_and_names_units_safely(tmp_path):
    work = WorkStore.open(tmp_path / "w", {"model": "m", "n": 1})
    array = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    work.save_array("a", array)
    work.save_json("plan", {"tiles": [1, 2]})
    segment = tmp_path / "segment.mp4"
    segment.write_bytes(b"frames")
    kept = work.adopt_file("segment-0", segment)
    assert kept.read_bytes() == b"frames" and not segment.exists()
    again = WorkStore.open(tmp_path / "w", {"n": 1, "model": "m"})  # same identity, any key order
    np.testing.assert_array_equal(again.load_array("a"), array)
    assert again.load_json("plan") == {"tiles": [1, 2]} and again.names() == ["a", "plan", "segment-0"]
    assert not list((tmp_path / "w").glob(".*.tmp"))
    for bad in ("../x", "a/b", "", "x" * 200):
        with pytest.raises(ValueError):
            again.save_json(bad, 1)
    again.delete()
    assert not (tmp_path / "w").exists()
    assert digest(array) == digest(array.copy()) != digest(array.astype(np.float32))


def test_synced_passes_recompute_when_the_tile_states_would_not_fit_and_agree(store, monkeypatch):
    model = store.load("realcugan-x3-no-denoise", "cpu").module
    image = np.asarray(crop_of("Set14/comic.png", (20, 30, 85, 73)), dtype=np.float32) / 255.0  # 43 x 65
    options = TileOptions(tile=32)
    plan = plan_for(43, 65, options, 4, model_context(model))
    kept, recomputed = [], []
    staged = run_plan(model, image, plan, scale=3, options=options, before_forward=kept.append)
    monkeypatch.setattr("esrgan.tiling.se_passes.available_ram", lambda: 0)  # no room for any state
    again = run_plan(model, image, plan, scale=3, options=options, before_forward=recomputed.append)
    passes = len(model.se_blocks) + 1
    assert len(kept) == plan.count and len(recomputed) == plan.count * passes + 1  # + the first, refused
    assert psnr(again.image, staged.image) >= 100


def test_a_full_disk_stops_the_checkpoints_not_the_work(tmp_path, photo, monkeypatch):
    """Keeping finished tiles is a courtesy to a run that may crash: with no room left the run goes on."""
    import errno
    import os

    model = TinySR().eval()
    plan = plan_for(*photo.shape[:2], OPTIONS)
    whole = run_plan(model, photo, plan, scale=2, options=OPTIONS).image
    store = WorkStore.open(tmp_path / "work", {"work": "full disk"})

    def no_room(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_room)
    result = run_plan(model, photo, plan, scale=2, options=OPTIONS, checkpoint=store)
    assert store.full and not store.names()
    assert not list((tmp_path / "work").glob(".*.tmp"))  # no half-written unit left behind
    np.testing.assert_array_equal(result.image, whole)
