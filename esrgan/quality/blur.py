"""Blur kernels of the realistic degradation, and filtering a batch with them.

Gaussian, generalized Gaussian and plateau kernels with a rotated anisotropic covariance, and the 2-D
sinc (circular low-pass) that makes ringing, as in Real-ESRGAN's degradation. Kernels are computed in
float64 and normalised to sum to 1; which kernel a round uses is drawn in `esrgan.quality.degrade`.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def _grid(size: int) -> torch.Tensor:
    ax = torch.arange(-(size // 2), size // 2 + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return torch.stack((xx, yy), dim=-1)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """x^T Sigma^-1 x over a size x size grid for a rotated anisotropic covariance."""
    c, s = math.cos(theta), math.sin(theta)
    rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    covariance = rotation @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rotation.T
    inverse = torch.linalg.inv(covariance)
    grid = _grid(size)
    return torch.einsum("ijk,kl,ijl->ij", grid, inverse, grid)


def anisotropic_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, kind: str = "gaussian",
                       beta: float = 1.0) -> torch.Tensor:
    """A normalised blur kernel: Gaussian, generalized Gaussian (exp(-q^beta/2)) or plateau."""
    q = _quadratic_form(size, sigma_x, sigma_y, theta)
    if kind == "gaussian":
        kernel = torch.exp(-0.5 * q)
    elif kind == "generalized":
        kernel = torch.exp(-0.5 * q.pow(beta))
    elif kind == "plateau":
        kernel = 1.0 / (q.pow(beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return kernel / kernel.sum()


def sinc_kernel(cutoff: float, size: int) -> torch.Tensor:
    """A circular low-pass (2-D sinc) kernel: ringing and overshoot artifacts."""
    grid = _grid(size)
    radius = grid.norm(dim=-1)
    safe = torch.where(radius == 0, torch.ones_like(radius), radius)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(radius == 0, torch.full_like(kernel, cutoff**2 / (4 * math.pi)), kernel)
    return kernel / kernel.sum()


def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image of (N, C, H, W) with its own (N, k, k) kernel, reflect-padded."""
    n, c, h, w = images.shape
    k = kernels.shape[-1]
    padded = F.pad(images, (k // 2,) * 4, mode="reflect" if min(h, w) > k // 2 else "replicate")
    weight = kernels.to(images).repeat_interleave(c, dim=0)[:, None]
    out = F.conv2d(padded.reshape(1, n * c, *padded.shape[-2:]), weight, groups=n * c)
    return out.reshape(n, c, h, w)
