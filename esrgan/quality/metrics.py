"""Full-reference quality metrics by the super-resolution field's convention.

PSNR and SSIM are measured on the Y channel of ITU-R BT.601 YCbCr (as MATLAB ``rgb2ycbcr``: Y in
[16, 235]) with ``scale`` pixels shaved from every border, after mod-cropping the HR image to a
multiple of the scale; RGB figures are given too. A single-channel image is its own Y, as in the
MATLAB evaluation scripts. SSIM is scikit-image's implementation with the settings of Wang et al.
(Gaussian window, sigma 1.5, population covariance), which the field's MATLAB code also uses.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

PEAK = 255.0


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop so that height and width are multiples of ``scale``."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def shave(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


def to_y(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB or (H, W[, 1]) gray in [0, 255] -> (H, W) float64 Y in [16, 235] (gray: as is)."""
    data = image.astype(np.float64)
    if data.ndim == 2 or data.shape[2] == 1:
        return data.reshape(data.shape[:2])
    r, g, b = data[..., 0], data[..., 1], data[..., 2]
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / PEAK


def psnr(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    """Peak signal-to-noise ratio in dB of two same-shape arrays in [0, peak]."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    """Mean SSIM of two same-shape arrays in [0, peak]; colour images average their channels."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    channel_axis = 2 if a.ndim == 3 and a.shape[2] > 1 else None
    if channel_axis is None:
        a, b = a.reshape(a.shape[:2]), b.reshape(b.shape[:2])
    return float(structural_similarity(a, b, data_range=peak, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, channel_axis=channel_axis))


def quality(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, float]:
    """PSNR/SSIM of an 8-bit result against its 8-bit ground truth, Y and RGB, border shaved.

    Args:
        sr: (H, W[, C]) uint8 result, already the size of the mod-cropped ``hr``.
        hr: (H, W[, C]) uint8 ground truth, mod-cropped.
        scale: Border to shave, in pixels.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"result {sr.shape} and ground truth {hr.shape} differ in shape")
    sr_y, hr_y = shave(to_y(sr), scale), shave(to_y(hr), scale)
    sr_c, hr_c = shave(sr, scale), shave(hr, scale)
    return {
        "psnr_y": psnr(sr_y, hr_y),
        "ssim_y": ssim(sr_y, hr_y),
        "psnr_rgb": psnr(sr_c, hr_c),
        "ssim_rgb": ssim(sr_c, hr_c),
    }
