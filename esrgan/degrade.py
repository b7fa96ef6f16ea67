"""Real-ESRGAN's high-order degradation: realistic low-resolution images from high-resolution ones.

Two rounds of blur -> resize -> noise -> JPEG, then a final resize with an optional sinc filter
and JPEG in random order, as in Wang et al., "Real-ESRGAN: Training Real-World Blind
Super-Resolution with Pure Synthetic Data" (ICCV-W 2021). Parameter names and defaults are those
of Real-ESRGAN's training options. Unlike the original, which draws from global ``np.random``,
every draw here comes from an explicit ``torch.Generator``: the same seed gives the same images.

Tensors are (N, 3, H, W) float RGB in [0, 1], on the CPU or CUDA; the parameters are drawn on the
CPU, so a seed gives the same draws on either device.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
KERNEL_SIZES = tuple(range(7, 22, 2))
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class DegradationConfig:
    """Real-ESRGAN's degradation options (names and defaults of ``train_realesrgan_x4plus.yml``)."""

    scale: int = 4
    # first order
    blur_kernel_size: int = 21
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = KERNEL_PROBS
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # second order
    second_blur_prob: float = 0.8
    blur_kernel_size2: int = 21
    kernel_list2: tuple[str, ...] = KERNEL_TYPES
    kernel_prob2: tuple[float, ...] = KERNEL_PROBS
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    # the final step
    final_sinc_prob: float = 0.8


# --- drawing -----------------------------------------------------------------------------------

def _uniform(rng: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=rng).item()


def _choice(rng: torch.Generator, options, probs) -> object:
    index = torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=rng).item()
    return options[index]


# --- kernels ------------------------------------------------------------------------------------

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


def random_kernel(rng: torch.Generator, cfg: DegradationConfig, second: bool = False) -> torch.Tensor:
    """One blur kernel of the first or second round, padded to the round's full size."""
    full = cfg.blur_kernel_size2 if second else cfg.blur_kernel_size
    size = int(_choice(rng, KERNEL_SIZES, [1.0] * len(KERNEL_SIZES)))
    if torch.rand((), generator=rng).item() < (cfg.sinc_prob2 if second else cfg.sinc_prob):
        low = math.pi / 3 if size < 13 else math.pi / 5
        kernel = sinc_kernel(_uniform(rng, low, math.pi), size)
    else:
        kinds, probs = (cfg.kernel_list2, cfg.kernel_prob2) if second else (cfg.kernel_list, cfg.kernel_prob)
        sigma = cfg.blur_sigma2 if second else cfg.blur_sigma
        betag = cfg.betag_range2 if second else cfg.betag_range
        betap = cfg.betap_range2 if second else cfg.betap_range
        kind = str(_choice(rng, kinds, probs))
        sigma_x = _uniform(rng, *sigma)
        if kind.endswith("iso") and not kind.endswith("aniso"):
            sigma_y, theta = sigma_x, 0.0
        else:
            sigma_y, theta = _uniform(rng, *sigma), _uniform(rng, -math.pi, math.pi)
        if kind.startswith("generalized"):
            below_one = torch.rand((), generator=rng).item() < 0.5
            beta = _uniform(rng, betag[0], 1) if below_one else _uniform(rng, 1, betag[1])
            kernel = anisotropic_kernel(size, sigma_x, sigma_y, theta, "generalized", beta)
        elif kind.startswith("plateau"):
            kernel = anisotropic_kernel(size, sigma_x, sigma_y, theta, "plateau", _uniform(rng, *betap))
        else:
            kernel = anisotropic_kernel(size, sigma_x, sigma_y, theta, "gaussian")
    pad = (full - size) // 2
    return F.pad(kernel, (pad, pad, pad, pad)).float()


def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image of (N, C, H, W) with its own (N, k, k) kernel, reflect-padded."""
    n, c, h, w = images.shape
    k = kernels.shape[-1]
    padded = F.pad(images, (k // 2,) * 4, mode="reflect" if min(h, w) > k // 2 else "replicate")
    weight = kernels.to(images).repeat_interleave(c, dim=0)[:, None]
    out = F.conv2d(padded.reshape(1, n * c, *padded.shape[-2:]), weight, groups=n * c)
    return out.reshape(n, c, h, w)


# --- noise, resize, JPEG ------------------------------------------------------------------------

def add_noise(images: torch.Tensor, rng: torch.Generator, gaussian_prob: float, sigma_range, poisson_range,
              gray_prob: float) -> torch.Tensor:
    """Gaussian or Poisson noise per image, colour or gray."""
    out = []
    for image in images:
        gray = torch.rand((), generator=rng).item() < gray_prob
        shape = (1, *image.shape[1:]) if gray else image.shape
        if torch.rand((), generator=rng).item() < gaussian_prob:
            sigma = _uniform(rng, *sigma_range) / 255.0
            noise = torch.randn(shape, generator=rng) * sigma
        else:
            scale = _uniform(rng, *poisson_range)
            base = image.mean(0, keepdim=True) if gray else image
            counts = (base.cpu().clamp(0, 1) * 255.0).round()
            noise = (torch.poisson(counts, generator=rng) - counts) / 255.0 * scale
        out.append(image + noise.to(image).expand_as(image))
    return torch.stack(out)


def random_resize(images: torch.Tensor, rng: torch.Generator, probs, scale_range,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize up, down or keep (by ``probs``) with a random mode; or to ``size`` when given."""
    mode = str(_choice(rng, RESIZE_MODES, [1.0] * 3))
    if size is None:
        direction = _choice(rng, ("up", "down", "keep"), probs)
        factor = {"up": lambda: _uniform(rng, 1, scale_range[1]),
                  "down": lambda: _uniform(rng, scale_range[0], 1), "keep": lambda: 1.0}[direction]()
        size = (max(1, int(images.shape[-2] * factor)), max(1, int(images.shape[-1] * factor)))
    align = {"align_corners": False} if mode != "area" else {}
    return F.interpolate(images, size=size, mode=mode, **align)


def jpeg(images: torch.Tensor, rng: torch.Generator, quality_range) -> torch.Tensor:
    """Compress each image as a JPEG of random quality and decode it again (Pillow, on the CPU)."""
    out = []
    for image in images.clamp(0, 1):
        quality = int(round(_uniform(rng, *quality_range)))
        array = (image.permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer).convert("RGB"), np.float32) / 255.0
        out.append(torch.from_numpy(decoded).permute(2, 0, 1))
    return torch.stack(out).to(images)


# --- the pipeline -------------------------------------------------------------------------------

def degrade(hr: torch.Tensor, cfg: DegradationConfig = DegradationConfig(),
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Make realistic low-resolution images.

    Args:
        hr: (N, 3, H, W) float RGB in [0, 1]; H and W multiples of ``cfg.scale``.
        cfg: Degradation options.
        generator: Source of every random draw (a CPU generator); a fresh unseeded one if None.

    Returns:
        (N, 3, H / scale, W / scale) float RGB in [0, 1], quantised to 8 bits.
    """
    rng = generator if generator is not None else torch.Generator().manual_seed(torch.seed())
    n, _, height, width = hr.shape
    target = (height // cfg.scale, width // cfg.scale)

    out = filter2d(hr, torch.stack([random_kernel(rng, cfg) for _ in range(n)]))
    out = random_resize(out, rng, cfg.resize_prob, cfg.resize_range)
    out = add_noise(out, rng, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range, cfg.gray_noise_prob)
    out = jpeg(out, rng, cfg.jpeg_range)

    if torch.rand((), generator=rng).item() < cfg.second_blur_prob:
        out = filter2d(out, torch.stack([random_kernel(rng, cfg, second=True) for _ in range(n)]))
    factor = _choice(rng, ("up", "down", "keep"), cfg.resize_prob2)
    factor = {"up": _uniform(rng, 1, cfg.resize_range2[1]), "down": _uniform(rng, cfg.resize_range2[0], 1),
              "keep": 1.0}[factor]
    size2 = (max(1, int(target[0] * factor)), max(1, int(target[1] * factor)))
    out = random_resize(out, rng, cfg.resize_prob2, cfg.resize_range2, size=size2)
    out = add_noise(out, rng, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2,
                    cfg.gray_noise_prob2)

    if torch.rand((), generator=rng).item() < cfg.final_sinc_prob:
        size = int(_choice(rng, KERNEL_SIZES, [1.0] * len(KERNEL_SIZES)))
        final = sinc_kernel(_uniform(rng, math.pi / 3, math.pi), size).float()
    else:
        final = None
    final_kernels = None if final is None else final[None].expand(n, -1, -1)
    if torch.rand((), generator=rng).item() < 0.5:  # resize + sinc, then JPEG
        out = random_resize(out, rng, cfg.resize_prob2, cfg.resize_range2, size=target)
        out = filter2d(out, final_kernels) if final_kernels is not None else out
        out = jpeg(out, rng, cfg.jpeg_range2)
    else:  # JPEG, then resize + sinc
        out = jpeg(out, rng, cfg.jpeg_range2)
        out = random_resize(out, rng, cfg.resize_prob2, cfg.resize_range2, size=target)
        out = filter2d(out, final_kernels) if final_kernels is not None else out
    return (out.clamp(0, 1) * 255.0).round() / 255.0


def degrade_image(hr: np.ndarray, cfg: DegradationConfig = DegradationConfig(), seed: int = 0) -> np.ndarray:
    """Degrade one (H, W, 3) float32 RGB image in [0, 1] (mod-cropped by the caller) with a seed."""
    tensor = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None].float()
    lr = degrade(tensor, cfg, torch.Generator().manual_seed(seed))
    return lr[0].permute(1, 2, 0).numpy()
