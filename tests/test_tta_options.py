"""TTA through the product: the engine's ``tta``, the CLI's ``--tta``, the form field ``tta``, the
estimate and the page's switch, each giving `esrgan.tiling.tta`'s own result on a tiny network."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from esrgan.io.imageio import DecodedImage, read_image
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.tiling.run import TileOptions, upscale_tiled
from esrgan.tiling.tta import TRANSFORMS, with_tta
from tests.conftest import ROOT, dataset_image
from tests.test_tiny_models import save_checkpoint, tiny_network
from web.jobs.estimate import job_priors

MODEL = "tiny-rrdb-x4"
COMPACT = "tiny-compact-x4"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tta-weights")
    for name in (MODEL, COMPACT):
        save_checkpoint(tiny_network(name), folder / f"{name}.pth")
    return folder


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 37x29 crop of a real photo (odd sides), (H, W, 3) float32 in [0, 1]."""
    return np.ascontiguousarray(read_image(dataset_image("astronaut_lr4.png")).pixels[20:57, 30:59])


def tta_reference(name: str, image: np.ndarray) -> np.ndarray:
    """`esrgan.tiling.tta`'s result: the saved network, wrapped, over the whole image."""
    return upscale_tiled(with_tta(tiny_network(name)), image, scale=4, options=TileOptions(tile=0))


def engine(folder, **settings) -> Upscaler:
    store = ModelStore(folder, ncnn_dir=folder / "no-shipped-weights")
    return Upscaler(store, Settings(device="cpu", precision="fp32", **settings))


@pytest.mark.parametrize("name", [MODEL, COMPACT])
def test_the_engine_with_tta_gives_the_tta_result_and_says_so(tiny_weights, photo, name):
    upscaler = engine(tiny_weights, tile=0)
    steps = []
    result = upscaler.upscale(DecodedImage(photo), 4, model=name, tta=True, float_result=True,
                              progress=lambda done, total: steps.append((done, total)))
    expected = tta_reference(name, photo)
    np.testing.assert_allclose(result.image.pixels, expected, rtol=0, atol=2e-6)
    plain = upscaler.upscale(DecodedImage(photo), 4, model=name, float_result=True)
    assert np.abs(plain.image.pixels - expected).mean() > 1e-3  # TTA changed the result
    assert result.provenance.tta and not plain.provenance.tta
    assert result.provenance.as_dict()["tta"] is True
    # Progress counts each of the 8 runs' blocks: monotonic, ending at its total.
    blocks = 1 if name == MODEL else 4  # one RRDB; the compact model's 4 body convolutions
    assert steps[-1] == (TRANSFORMS * blocks + 1, TRANSFORMS * blocks + 1)
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_tiled_tta_equals_whole_image_tta(tiny_weights, photo):
    tiled = engine(tiny_weights, tile=16, tile_pad=24).upscale(DecodedImage(photo), 4, model=MODEL, tta=True,
                                                                     float_result=True)
    assert tiled.provenance.tiles > 1
    np.testing.assert_allclose(tiled.image.pixels, tta_reference(MODEL, photo), rtol=0, atol=1e-5)


def test_the_cli_flag_writes_the_tta_result(tiny_weights, photo, tmp_path):
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(source)
    image = read_image(source).pixels  # what the CLI reads: the 8-bit photo
    env = {"REMASTER_WEIGHTS_FOLDER": str(tiny_weights), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "esrgan", "upscale", str(source), "-o", str(target), "--model",
                           MODEL, "--tta", "--fp32", "--tile", "0"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "with TTA" in done.stdout
    written = np.asarray(Image.open(target), np.float32) / 255
    expected = np.round(tta_reference(MODEL, image) * 255) / 255
    assert written.shape == (37 * 4, 29 * 4, 3)
    assert np.abs(written - expected).max() <= 1 / 255 + 1e-6


def test_the_help_offers_tta():
    done = subprocess.run([sys.executable, "-m", "esrgan", "upscale", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert "--tta" in done.stdout and "8x slower" in done.stdout


@pytest.fixture
def tiny_client(make_app, tiny_weights):
    return make_app(WEIGHTS_FOLDER=str(tiny_weights), PRECISION="fp32", TILE=0).test_client()


def png(photo: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_form_field_gives_the_tta_result_with_its_provenance(tiny_client, photo):
    data = png(photo)
    answer = tiny_client.post("/upscale", data={"file": (io.BytesIO(data), "in.png"), "scale": "4",
                                                "model": MODEL, "tta": "true"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["provenance"]["tta"] is True
    with tiny_client.get(body["output_path"]) as out:
        written = np.asarray(Image.open(io.BytesIO(out.data)), np.float32) / 255
    expected = np.round(tta_reference(MODEL, np.asarray(Image.open(io.BytesIO(data)), np.float32) / 255) * 255) / 255
    assert np.abs(written - expected).max() <= 1 / 255 + 1e-6
    plain = tiny_client.post("/upscale", data={"file": (io.BytesIO(data), "in.png"), "scale": "4", "model": MODEL})
    assert plain.get_json()["provenance"]["tta"] is False


def test_a_bad_tta_value_is_a_400_with_the_reason(tiny_client, photo):
    answer = tiny_client.post("/upscale", data={"file": (io.BytesIO(png(photo)), "in.png"), "scale": "4",
                                                "tta": "maybe"})
    assert answer.status_code == 400
    assert "tta" in answer.get_json()["error"]


def test_the_estimate_with_tta_is_eight_times_the_upscaling():
    def estimate(model: str, width: int, height: int) -> float:
        return 1e-6 * width * height

    plain = job_priors(MODEL, 1000, 700, 4, "png", False, 1e9, {MODEL}, estimate)
    tta = job_priors(MODEL, 1000, 700, 4, "png", False, 1e9, {MODEL}, estimate, tta=True)
    assert tta.upscale == pytest.approx(TRANSFORMS * plain.upscale, rel=1e-12)
    assert tta.finish == plain.finish  # the encoding does not change


def test_the_estimate_route_multiplies_by_eight(tiny_client):
    query = {"width": 1001, "height": 777, "model": MODEL, "scale": "4"}
    plain = tiny_client.get("/api/estimate", query_string=query).get_json()
    tta = tiny_client.get("/api/estimate", query_string={**query, "tta": "true"}).get_json()
    # Both from the same rate; each is rounded to a tenth for display.
    assert abs(tta["seconds_parts"]["upscale"] - TRANSFORMS * plain["seconds_parts"]["upscale"]) <= 0.05 * 9
    assert tta["seconds_parts"]["upscale"] > plain["seconds_parts"]["upscale"]


def test_the_server_offers_tta_and_the_page_renders_it(tiny_client):
    options = {o["name"]: o for o in tiny_client.get("/api/models").get_json()["options"]}
    assert options["tta"]["available"] and options["tta"]["label"] == "Best quality, 8x slower"
    page = tiny_client.get("/").get_data(as_text=True)
    assert 'name="tta"' in page and "Best quality, 8x slower" in page


@pytest.mark.browser
def test_the_page_draws_the_servers_switches_sends_them_and_ticks_none_silently(serve, tiny_weights, page, photo,
                                                                                 tmp_path):
    from playwright.sync_api import expect

    page.goto(serve(WEIGHTS_FOLDER=str(tiny_weights), PRECISION="fp32"))
    tta = page.get_by_label("Best quality, 8x slower")
    expect(tta).to_be_visible()
    # No face checkpoint here: shown off, with how to add one.
    expect(page.get_by_label("Restore faces")).to_be_disabled()
    expect(page.get_by_label("Restore faces")).to_have_accessible_description(re.compile("checkpoint"))
    page.select_option("#model", MODEL)
    tta.check()
    source = tmp_path / "in.png"
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(source)
    with page.expect_request(lambda r: "/api/estimate" in r.url and "tta=true" in r.url, timeout=120_000):
        page.set_input_files("#file", str(source))
    # A switch costs time: the next visit starts with it off, not ticked without a word.
    page.reload()
    expect(page.get_by_label("Best quality, 8x slower")).not_to_be_checked()
