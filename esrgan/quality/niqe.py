"""NIQE, the "completely blind" image quality score of Mittal et al. (2013): lower is better.

No reference image is needed: an image's local statistics are compared with a model of pristine
natural images. The steps, with the conventions of the authors' MATLAB release (which basicsr and
pyiqa reproduce):

1. The luma: Y of BT.601 YCbCr (MATLAB ``rgb2ycbcr``, rounded to integers as an 8-bit Y plane is),
   ``crop_border`` pixels cut from every edge, then cropped to whole 96 x 96 patches.
2. MSCN coefficients: (I - mu) / (sigma + 1), with mu and sigma the local mean and deviation under a
   7 x 7 Gaussian window (sigma 7/6), edges replicated; exactly 0 where the window is flat (our one
   deliberate difference: see `mscn`).
3. Per patch, 18 features: a generalised Gaussian fit of the coefficients (shape, scale) and an
   asymmetric one of the products of neighbours in four directions (shape, mean, left and right
   scale), each fit by moment matching against a table of shapes 0.2, 0.201, ..., 10.
4. The same at half resolution (MATLAB bicubic ``imresize``, 48 x 48 patches): 36 features a patch.
5. A multivariate Gaussian of the patches' features (NaN-aware mean; covariance over complete rows)
   and its distance to the pristine one: sqrt((mu_p - mu)^T pinv((S_p + S) / 2) (mu_p - mu)).

The pristine model (mean, covariance and the Gaussian window) is the authors' ``modelparameters.mat``
as basicsr ships it, in ``esrgan/data/niqe_pris_params.npz`` (see ``esrgan/data/README.md``).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np

from esrgan.errors import RemasterError
from esrgan.quality.metrics import to_y
from esrgan.quality.resize import imresize

PARAMS_FILE = Path(__file__).resolve().parent.parent / "data" / "niqe_pris_params.npz"
PATCH = 96  # side of a patch at full resolution, as the pristine model was fitted
SHAPES = np.arange(0.2, 10.001, 0.001)  # the shape parameters the moment matching may choose
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical and both diagonals
CHUNK = 256  # patches fitted at a time, to bound the (patches x shapes) table in memory
FLAT_RANGE = 1e-6  # grey levels: a window whose values span less is flat (real detail spans >= 1e-4)


class NIQEError(RemasterError):
    """The image cannot be scored by NIQE (too small, or without any texture to measure)."""


@cache
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (36,), covariance (36, 36), 7 x 7 Gaussian window) of the pristine images."""
    with np.load(PARAMS_FILE) as params:
        return (params["mu_pris_param"].reshape(-1), params["cov_pris_param"],
                params["gaussian_window"])


@cache
def _moment_ratios() -> np.ndarray:
    """Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) for every shape a in SHAPES."""
    lg = np.vectorize(math.lgamma)
    inv = 1.0 / SHAPES
    return np.exp(2 * lg(2 * inv) - lg(inv) - lg(3 * inv))


def _gamma(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.gamma, otypes=[np.float64])(x)


def _filter_replicate(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Correlate ``image`` with a small odd window, edges replicated (MATLAB ``imfilter 'replicate'``)."""
    ry, rx = window.shape[0] // 2, window.shape[1] // 2
    padded = np.pad(image, ((ry, ry), (rx, rx)), mode="edge")
    views = np.lib.stride_tricks.sliding_window_view(padded, window.shape)
    return np.einsum("ijkl,kl->ij", views, window)


def mscn(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a float (H, W) image in [0, 255].

    Where the whole window is flat the coefficient is exactly 0. The reference implementations give
    floating-point rounding residue there instead (the window's weights do not sum to exactly 1), and
    that residue decides the neighbour-sign statistics of mostly flat patches: on a 288 x 288 crop of
    a slide, basicsr gives 10.02 in float64 and 9.82 in float32. Zero makes the score well defined.
    """
    mu = _filter_replicate(image, window)
    sigma = np.sqrt(np.abs(_filter_replicate(image * image, window) - mu * mu))
    coefficients = (image - mu) / (sigma + 1.0)
    coefficients[_local_range(image, window.shape) < FLAT_RANGE] = 0.0
    return coefficients


def _local_range(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Max minus min over each pixel's neighbourhood (edges replicated), one axis at a time."""
    ry, rx = shape[0] // 2, shape[1] // 2
    padded = np.pad(image, ((ry, ry), (rx, rx)), mode="edge")
    rows = np.lib.stride_tricks.sliding_window_view(padded, shape[1], axis=1)
    high = np.lib.stride_tricks.sliding_window_view(rows.max(axis=2), shape[0], axis=0).max(axis=2)
    low = np.lib.stride_tricks.sliding_window_view(rows.min(axis=2), shape[0], axis=0).min(axis=2)
    return high - low


def aggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit of each row of ``samples`` (N, M).

    Returns (shape, left scale, right scale), each (N,). A row without negative (or positive)
    values has a NaN left (right) scale and the first tabulated shape, as the MATLAB code gives.
    """
    negative, positive = samples < 0, samples > 0
    squares = samples * samples
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt((squares * negative).sum(1) / negative.sum(1))
        right = np.sqrt((squares * positive).sum(1) / positive.sum(1))
        ratio = left / right
        rhat = np.abs(samples).mean(1) ** 2 / squares.mean(1)
        rhat_norm = rhat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
        distance = (_moment_ratios()[None, :] - rhat_norm[:, None]) ** 2
    # MATLAB's min (and numpy's argmin) of an all-NaN row is its first index: keep that.
    shape = SHAPES[np.argmin(np.nan_to_num(distance, nan=np.inf), axis=1)]
    spread = np.sqrt(_gamma(1 / shape) / _gamma(3 / shape))
    return shape, left * spread, right * spread


def patch_features(patches: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of each MSCN patch of ``patches`` (N, h, w) -> (N, 18)."""
    shape, left, right = aggd_fit(patches.reshape(len(patches), -1))
    columns = [shape, (left + right) / 2]
    for dy, dx in NEIGHBOURS:
        # Neighbours wrap around inside the patch (MATLAB ``circshift`` of the block).
        products = patches * np.roll(patches, (dy, dx), axis=(1, 2))
        shape, left, right = aggd_fit(products.reshape(len(patches), -1))
        mean = (right - left) * _gamma(2 / shape) / _gamma(1 / shape)
        columns += [shape, mean, left, right]
    return np.stack(columns, axis=1)


def _patches(image: np.ndarray, side: int) -> np.ndarray:
    rows, cols = image.shape[0] // side, image.shape[1] // side
    blocks = image[: rows * side, : cols * side].reshape(rows, side, cols, side)
    return blocks.transpose(0, 2, 1, 3).reshape(rows * cols, side, side)


def _scale_features(image: np.ndarray, side: int, window: np.ndarray) -> np.ndarray:
    patches = _patches(mscn(image, window), side)
    return np.concatenate([patch_features(patches[i : i + CHUNK]) for i in range(0, len(patches), CHUNK)])


def niqe_of_luma(luma: np.ndarray) -> float:
    """NIQE of a float (H, W) luma plane in [0, 255], already border-cropped and rounded.

    Raises:
        NIQEError: fewer than one whole 96 x 96 patch, or no patch with measurable texture.
    """
    mu_pristine, cov_pristine, window = pristine_model()
    rows, cols = luma.shape[0] // PATCH, luma.shape[1] // PATCH
    if rows == 0 or cols == 0:
        raise NIQEError(f"NIQE needs at least {PATCH}x{PATCH} pixels after the border crop, "
                        f"got {luma.shape[1]}x{luma.shape[0]}")
    image = luma[: rows * PATCH, : cols * PATCH].astype(np.float64)
    fine = _scale_features(image, PATCH, window)
    half = imresize(image / 255.0, 0.5) * 255.0
    coarse = _scale_features(half, PATCH // 2, window)
    features = np.concatenate([fine, coarse], axis=1)

    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) == 0:
        raise NIQEError("NIQE is undefined for an image without texture (every patch is flat)")
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(features)).sum(0)
        mu = np.where(counts > 0, np.nansum(features, 0) / np.maximum(counts, 1), np.nan)
    # One complete patch has no spread: a zero covariance, as MATLAB's cov of one row.
    cov = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros_like(cov_pristine)
    diff = mu_pristine - mu
    distance = diff @ np.linalg.pinv((cov_pristine + cov) / 2) @ diff
    return float(np.sqrt(distance))


def niqe(image: np.ndarray, crop_border: int = 0) -> float:
    """NIQE of an 8-bit image, scored on its Y channel; lower is better.

    Args:
        image: (H, W), (H, W, 1) gray or (H, W, 3) RGB, values in [0, 255] (uint8 or float).
        crop_border: Pixels cut from every edge first (the field crops ``scale`` pixels of a result).

    Raises:
        NIQEError: the image is too small (under 96 x 96 after the crop) or entirely flat.
    """
    luma = np.round(to_y(image))
    if crop_border:
        luma = luma[crop_border:-crop_border, crop_border:-crop_border]
    return niqe_of_luma(luma)
