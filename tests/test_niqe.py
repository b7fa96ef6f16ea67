"""NIQE against an independent implementation, the published MATLAB figure's conventions, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from esrgan.quality.niqe import NIQEError, niqe, niqe_of_luma, pristine_model
from esrgan.quality.resize import imresize

IMAGES = Path(__file__).parent / "data" / "niqe"

# basicsr 1.4.2 `calculate_niqe(img, crop_border, input_order="HWC" (BGR) or "HW" for gray,
# convert_to="y")`, run on these files from basicsr's PyPI sdist by bench/niqe_crosscheck.py
# (basicsr reproduces MATLAB's 5.7296 on Set14 baboon; so do we, to 1e-6, see the README).
# "coffee_bicubic_x4" is coffee.png shrunk 4x and enlarged 4x by esrgan.quality.resize.imresize (MATLAB bicubic).
BASICSR = {  # name: (crop_border 0, crop_border 4)
    "chelsea": (2.613195, 2.628930),
    "coffee": (5.241193, 7.047512),
    "camera": (3.288209, 4.018437),
    "rocket": (10.714020, 12.221363),
    "coffee_bicubic_x4": (7.821611, 7.557005),
}
# basicsr computes in float32 and we in float64: they differ by up to 0.001 here.
# A wrong convention moves the score more (not rounding Y: +0.025 on chelsea; gray instead of Y: -0.033).
TOLERANCE = 0.005


def load(name: str) -> np.ndarray:
    if name == "coffee_bicubic_x4":
        return imresize(imresize(load("coffee"), 0.25), 4.0)
    return np.asarray(Image.open(IMAGES / f"{name}.png"))


@pytest.mark.parametrize("name", BASICSR)
@pytest.mark.parametrize("border", [0, 4])
def test_matches_basicsr_reference_values(name, border):
    expected = BASICSR[name][border // 4]
    assert niqe(load(name), crop_border=border) == pytest.approx(expected, abs=TOLERANCE)


def test_blur_and_bicubic_upscaling_score_worse_than_the_photo():
    photo = load("coffee")
    blurred = np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(2)))
    assert niqe(blurred) > niqe(photo) + 1
    assert niqe(load("coffee_bicubic_x4")) > niqe(photo) + 1


def test_gray_is_scored_as_its_own_luma_in_any_layout():
    gray = load("camera")
    assert niqe(gray) == niqe(gray[..., None]) == niqe(gray.astype(np.float32))
    # As RGB it goes through BT.601 Y (studio range), a different image to NIQE.
    assert niqe(np.repeat(gray[..., None], 3, 2)) != pytest.approx(niqe(gray), abs=0.01)


def test_pristine_model_is_the_published_one():
    mu, cov, window = pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36) and np.allclose(cov, cov.T)
    # MATLAB fspecial('gaussian', 7, 7/6)
    x = np.arange(-3, 4)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
    np.testing.assert_allclose(window, g / g.sum(), atol=1e-12)


def test_too_small_or_flat_images_raise_a_clear_error():
    photo = load("chelsea")
    with pytest.raises(NIQEError, match="96x96"):
        niqe(photo[:95, :200])
    with pytest.raises(NIQEError, match="96x96"):
        niqe(photo[:100, :100], crop_border=4)
    with pytest.raises(NIQEError, match="flat"):
        niqe(np.full((200, 200, 3), 128, np.uint8))


def test_flat_regions_are_exactly_flat_so_an_offset_changes_nothing():
    # A slide-like picture: a photo with a large uniform area. MSCN is invariant to adding a
    # constant; floating-point residue in the flat area would make the score depend on its grey level.
    luma = load("camera").astype(np.float64)
    luma[:150, :200] = 255.0
    assert niqe_of_luma(luma + 37.0) == pytest.approx(niqe_of_luma(luma), abs=1e-9)
