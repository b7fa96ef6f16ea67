"""``POST /api/compare`` through Flask's test client, with real weights: each candidate's crop equals
the same region of that model's full run through ``/upscale`` (fp32 both), a slow comparison
answers 202 with a job whose result holds the candidates, the proposal a page starts from, and
every bad request is a 400 with its reason that leaves no file behind."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from esrgan.compare import MAX_CROP_PIXELS, most_detailed, window
from esrgan.io.imageio import as_float
from tests.conftest import crop_of, get, job_finished, png_bytes, psnr

# Plain convolutions, and two U-nets whose squeeze-excitation means come from the crop's window.
MODELS = ("realesr-animevideov3", "realcugan-x2-no-denoise", "waifu2x-cunet-x2")
SIZE = (203, 131)  # odd sides; the crop's window below is a strict part of the image
CROP = (104, 40, 24, 20)
MIN_PSNR = 40.0


def send(client, url: str, data: bytes, name: str = "photo.png", **fields):
    form = {"scale": "2", **fields, "file": (io.BytesIO(data), name)}
    return client.post(url, data=form, content_type="multipart/form-data")


def photo(size: tuple[int, int] = SIZE) -> bytes:
    return png_bytes(crop_of("coffee.png", (120, 100, 120 + size[0], 100 + size[1])))


def pixels(client, url: str) -> np.ndarray:
    served = get(client, url)
    assert served.status_code == 200 and served.mimetype == "image/png", url
    return np.asarray(Image.open(io.BytesIO(served.data)).convert("RGB"))


@pytest.fixture
def app(make_app):
    """fp32, as the full runs compared with; no quick preview before a full run."""
    return make_app(PRECISION="fp32", PREVIEW_MIN_SECONDS=1e9)


def test_candidates_equal_the_same_region_of_each_models_full_run(app):
    client = app.test_client()
    x, y, w, h = CROP
    wx, wy, ww, wh = window(CROP, *SIZE)
    assert wx > 0 and wx + ww < SIZE[0] and wy + wh < SIZE[1]  # a crop, not the whole image in disguise
    data = photo()
    response = send(client, "/api/compare", data, crop="104,40,24,20", models=",".join(MODELS))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["crop"] == {"x": x, "y": y, "width": w, "height": h}
    assert (body["output_width"], body["output_height"]) == (2 * w, 2 * h)
    assert [c["model"] for c in body["candidates"]] == list(MODELS)
    figures = {}
    for candidate in body["candidates"]:
        assert candidate["title"] and candidate["crop_seconds"] > 0 and candidate["full_seconds"] > 0, candidate
        got = pixels(client, candidate["image_url"])
        assert got.shape == (2 * h, 2 * w, 3)
        full = send(client, "/upscale", data, model=candidate["model"])
        assert full.status_code == 200, full.get_json()
        region = pixels(client, full.get_json()["output_path"])[2 * y : 2 * (y + h), 2 * x : 2 * (x + w)]
        figures[candidate["model"]] = round(float(psnr(as_float(got), as_float(region))), 1)
    print("crop through /api/compare vs the same region of /upscale, dB:", figures)
    assert all(value >= MIN_PSNR for value in figures.values()), figures
    # The job is there too, its result the same; a candidate downloads under the image's and the model's name.
    view = client.get(f"/api/jobs/{body['job_id']}").get_json()
    assert view["kind"] == "compare" and view["progress"]["unit"] == "models" and view["result"] == body
    saved = get(client, body["candidates"][0]["image_url"] + "?download=1")
    assert "filename=photo_realesr-animevideov3.png" in saved.headers["Content-Disposition"]


def test_a_slow_comparison_answers_202_and_its_job_holds_the_candidates(make_app, engine_hooks):
    engine_hooks(delay=0.1)  # every network step sleeps: the run outlasts the wait below on any CPU
    client = make_app(PRECISION="fp32", SYNC_TIMEOUT_SECONDS=0.5).test_client()
    response = send(client, "/api/compare", photo((77, 53)), crop="30,20,16,12", models="realesr-animevideov3")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["kind"] == "compare" and job["status"] in ("queued", "running")
    assert response.headers["Location"].endswith(job["status_url"])
    done = job_finished(client, job["id"])
    assert done["status"] == "done", done
    (candidate,) = done["result"]["candidates"]
    assert candidate["model"] == "realesr-animevideov3"
    assert pixels(client, candidate["image_url"]).shape == (24, 32, 3)


def test_the_proposal_is_the_most_detailed_region_and_the_models_a_comparison_tries(app):
    client = app.test_client()
    data = photo((77, 53))
    response = send(client, "/api/compare/proposal", data, anime="true", model="waifu2x-cunet-x2")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    x, y, w, h = most_detailed(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255)
    assert body["crop"] == {"x": x, "y": y, "width": w, "height": h}
    assert (body["image_width"], body["image_height"], body["max_crop_pixels"]) == (77, 53, MAX_CROP_PIXELS)
    models = [m["model"] for m in body["models"]]
    assert models[0] == "waifu2x-cunet-x2" and len(models) >= 3 and len(set(models)) == len(models)
    assert all(m["title"] for m in body["models"])
    assert not list(app.extensions["remaster"].files.root.iterdir())  # a proposal keeps nothing


@pytest.mark.parametrize(("size", "fields", "reason"), [
    ((77, 53), {"crop": "70,40,20,20"}, "is not inside the 77x53 image"),
    ((77, 53), {"crop": "5,5,0,10"}, "is not inside"),
    ((300, 260), {"crop": "0,0,300,260"}, "too large to compare"),
    ((77, 53), {"crop": "1,2,3"}, "crop must be X,Y,W,H"),
    ((77, 53), {"crop": "a,b,c,d"}, "crop must be X,Y,W,H"),
    ((77, 53), {"crop": "1,2,8,8", "models": "realesr-animevideov3,nonesuch"}, "no model named 'nonesuch'"),
    ((77, 53), {"scale": "9"}, "scale"),
    (None, {"crop": "1,2,8,8"}, "no file"),
])
def test_a_bad_comparison_is_a_400_with_its_reason_and_keeps_no_file(app, size, fields, reason):
    client = app.test_client()
    form = {"scale": "2", **fields}
    if size is not None:
        form["file"] = (io.BytesIO(photo(size)), "photo.png")
    response = client.post("/api/compare", data=form, content_type="multipart/form-data")
    assert response.status_code == 400 and reason in response.get_json()["error"], response.get_json()
    assert not list(app.extensions["remaster"].files.root.iterdir())
