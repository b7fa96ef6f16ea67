"""Out of memory in a real server process: the tests' hook (``TEST_OOM_AT_TILE``, `tests.hooks`) makes the
network raise torch's OutOfMemoryError at a chosen tile of a job run by ``python app.py``; the job halves its
tiles, finishes, equals an uninterrupted run and says in its provenance which tile size it ended with."""

from __future__ import annotations

import numpy as np
from PIL import Image

from esrgan.io.imageio import DecodedImage, to_uint8
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from tests.conftest import FINISHED, crop_of, png_bytes, psnr, wait_until
from tests.hooks import Hooks
from tests.test_restart import job_state, post_job, start_server


def test_out_of_memory_at_a_tile_halves_the_rest_and_the_job_still_equals_an_uninterrupted_run(
        tmp_path, weights_dir, store):
    folder, log = tmp_path / "uploads", tmp_path / "server.log"
    photo = crop_of("coffee.png", (10, 20, 107, 83))  # 97x63, odd sides: two tiles of 64 px (48 and 49 wide)
    settings = {"REMASTER_TILE": "64", "REMASTER_PREVIEW_MIN_SECONDS": "1e9"}
    server, base = start_server(folder, weights_dir, log, Hooks(oom_at_tile=1), **settings)
    try:
        job_id = post_job(base, png_bytes(photo), "realesr-animevideov3")
        state = wait_until(lambda: (lambda s: s if s["status"] in FINISHED else None)(job_state(base, job_id)),
                           300, "the job did not finish")
    finally:
        server.kill()
        server.wait(10)
    text = log.read_text()
    assert state["status"] == "done", (state, text[-3000:])
    provenance = state["result"]["provenance"]
    # The first tile kept as it was, the second (out of memory) cut in four of 32 px.
    assert provenance["tile"] == 32 and provenance["tiles"] == 5, provenance
    assert "out of memory with 64 px tiles: going on with 32 px tiles" in text
    assert "Traceback" not in text
    with Image.open(folder / f"{job_id}_out.png") as image:
        halved = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    uninterrupted = Upscaler(store, Settings(device="cpu", precision="fp32", tile=64)).upscale(
        DecodedImage(np.asarray(photo, dtype=np.float32) / 255), 4, model="realesr-animevideov3")
    assert uninterrupted.provenance.tile == 64 and uninterrupted.provenance.tiles == 2
    expected = to_uint8(uninterrupted.image.pixels) / 255
    assert halved.shape == expected.shape == (252, 388, 3)
    assert psnr(halved, expected) >= 60  # measured: equal in 8 bits (the fast model reaches 9 px)
