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
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from esrgan.errors import ConfigError
from esrgan.quality.blur import anisotropic_kernel, filter2d, sinc_kernel

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
KERNEL_SIZES = tuple(range(7, 22, 2))
RESIZE_MODES = ("area", "bilinear", "bicubic")
RESIZE_DIRECTIONS = ("up", "down", "keep")


@dataclass(frozen=True)
class DegradationStage:
    """One round of blur -> resize -> noise -> JPEG. Real-ESRGAN's option names: the first round's
    as they are here (``noise_range``), the second round's with a 2 (``noise_range2``).

    Attributes:
        blur_kernel_size: Side every blur kernel is padded to.
        kernel_list, kernel_prob: Blur kernel kinds and their probabilities.
        sinc_prob: Probability of a sinc (ringing) kernel instead.
        blur_sigma: Range of the Gaussian kernels' sigma.
        betag_range, betap_range: Shape ranges of the generalized and plateau kernels.
        resize_prob: Probabilities of resizing up, down, or keeping the size.
        resize_range: Range of the resize factor.
        gaussian_noise_prob: Probability of Gaussian noise (else Poisson).
        noise_range: Gaussian sigma range, in 8-bit levels.
        poisson_scale_range: Poisson noise strength range.
        gray_noise_prob: Probability that the noise is the same in every channel.
        jpeg_range: JPEG quality range.
    """

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


# Real-ESRGAN's defaults (train_realesrgan_x4plus.yml): the second round blurs and resizes less.
FIRST_ORDER = DegradationStage()
SECOND_ORDER = DegradationStage(blur_sigma=(0.2, 1.5), resize_prob=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
                                noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5))
SECOND_ORDER_SUFFIX = "2"


@dataclass(frozen=True)
class DegradationConfig:
    """Real-ESRGAN's degradation options: two rounds of the same kind, then the final step.

    Attributes:
        scale: The reduction, HR side / LR side.
        first, second: The two rounds.
        second_blur_prob: Probability that the second round blurs at all (the first always does).
        final_sinc_prob: Probability of the final sinc filter.
    """

    scale: int = 4
    first: DegradationStage = FIRST_ORDER
    second: DegradationStage = SECOND_ORDER
    second_blur_prob: float = 0.8
    final_sinc_prob: float = 0.8

    @classmethod
    def from_options(cls, options: Mapping[str, object], base: DegradationConfig | None = None) -> DegradationConfig:
        """Apply Real-ESRGAN's flat option names (``noise_range``, ``noise_range2``,
        ``second_blur_prob``, ...), as its YAML files spell them, to ``base`` (the defaults).

        Raises:
            ConfigError: An option of no such name, or a value of the wrong kind.
        """
        base = base or cls()
        stage_names = {f.name for f in fields(DegradationStage)}
        top = {f.name for f in fields(cls)} - {"first", "second"}
        first: dict[str, object] = {}
        second: dict[str, object] = {}
        rest: dict[str, object] = {}
        unknown = []
        for key, value in options.items():
            value = tuple(value) if isinstance(value, list) else value
            if key in stage_names:
                first[key] = value
            elif key.endswith(SECOND_ORDER_SUFFIX) and key[: -len(SECOND_ORDER_SUFFIX)] in stage_names:
                second[key[: -len(SECOND_ORDER_SUFFIX)]] = value
            elif key in top:
                rest[key] = value
            else:
                unknown.append(key)
        if unknown:
            raise ConfigError(f"unknown degradation options: {', '.join(sorted(unknown))}")
        config = replace(base, first=replace(base.first, **first), second=replace(base.second, **second), **rest)
        config.check()
        return config

    def check(self) -> None:
        """Raise ConfigError unless every probability is in [0, 1] and every range is ordered."""
        for where, owner in (("", self.first), (SECOND_ORDER_SUFFIX, self.second)):
            unknown_kinds = set(owner.kernel_list) - set(KERNEL_TYPES)
            if unknown_kinds or len(owner.kernel_list) != len(owner.kernel_prob):
                raise ConfigError(f"kernel_list{where} takes kinds from {', '.join(KERNEL_TYPES)}, one "
                                  f"kernel_prob{where} each: {owner.kernel_list!r}, {owner.kernel_prob!r}")
            if len(owner.resize_prob) != len(RESIZE_DIRECTIONS):
                raise ConfigError(f"resize_prob{where} takes three probabilities (up, down, keep)")
            for f in fields(DegradationStage):
                value = getattr(owner, f.name)
                name = f"{f.name}{where}"
                if f.name.endswith(("_range", "sigma")) and not _is_range(value):
                    raise ConfigError(f"degradation option {name} must be two numbers, low then high: {value!r}")
                if f.name.endswith("_prob") and not _is_probability(value):
                    raise ConfigError(f"degradation option {name} must be a probability in [0, 1]: {value!r}")
        for name in ("second_blur_prob", "final_sinc_prob"):
            if not _is_probability(getattr(self, name)):
                raise ConfigError(f"degradation option {name} must be a probability in [0, 1]")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ConfigError(f"degradation scale must be a whole number >= 1: {self.scale!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_range(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(map(_is_number, value)) and value[0] <= value[1]


def _is_probability(value: object) -> bool:
    """A probability, or a tuple of them (kernel_prob, resize_prob) that sums to more than 0."""
    if isinstance(value, tuple):
        return bool(value) and all(map(_is_probability, value)) and sum(value) > 0
    return _is_number(value) and 0 <= value <= 1


# --- drawing -----------------------------------------------------------------------------------

def _uniform(rng: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=rng).item()


def _choice(rng: torch.Generator, options, probs) -> object:
    index = torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=rng).item()
    return options[index]


# --- blur kernels of a round ------------------------------------------------------------------

def random_kernel(rng: torch.Generator, stage: DegradationStage) -> torch.Tensor:
    """One blur kernel of a round, padded to the round's full size."""
    size = int(_choice(rng, KERNEL_SIZES, [1.0] * len(KERNEL_SIZES)))
    if torch.rand((), generator=rng).item() < stage.sinc_prob:
        low = math.pi / 3 if size < 13 else math.pi / 5
        kernel = sinc_kernel(_uniform(rng, low, math.pi), size)
    else:
        kind = str(_choice(rng, stage.kernel_list, stage.kernel_prob))
        sigma_x = _uniform(rng, *stage.blur_sigma)
        if kind.endswith("iso") and not kind.endswith("aniso"):
            sigma_y, theta = sigma_x, 0.0
        else:
            sigma_y, theta = _uniform(rng, *stage.blur_sigma), _uniform(rng, -math.pi, math.pi)
        if kind.startswith("generalized"):
            below_one = torch.rand((), generator=rng).item() < 0.5
            betag = stage.betag_range
            beta = _uniform(rng, betag[0], 1) if below_one else _uniform(rng, 1, betag[1])
            kernel = anisotropic_kernel(size, sigma_x, sigma_y, theta, "generalized", beta)
        elif kind.startswith("plateau"):
            kernel = anisotropic_kernel(size, sigma_x, sigma_y, theta, "plateau", _uniform(rng, *stage.betap_range))
        else:
            kernel = anisotropic_kernel(size, sigma_x, sigma_y, theta, "gaussian")
    pad = (stage.blur_kernel_size - size) // 2
    return F.pad(kernel, (pad, pad, pad, pad)).float()


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
        direction = _choice(rng, RESIZE_DIRECTIONS, probs)
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
        # Rounded half to even, as BasicSR's JPEG step does (not `imageio.to_uint8`'s half up), so that
        # a seed gives the same images from one version to the next.
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

    first, second = cfg.first, cfg.second
    out = filter2d(hr, torch.stack([random_kernel(rng, first) for _ in range(n)]))
    out = random_resize(out, rng, first.resize_prob, first.resize_range)
    out = add_noise(out, rng, first.gaussian_noise_prob, first.noise_range, first.poisson_scale_range,
                    first.gray_noise_prob)
    out = jpeg(out, rng, first.jpeg_range)

    if torch.rand((), generator=rng).item() < cfg.second_blur_prob:
        out = filter2d(out, torch.stack([random_kernel(rng, second) for _ in range(n)]))
    # The second round resizes relative to the target size. Both factors are drawn whichever way it
    # goes: drawing only the one used would shift every later draw, and so change a seed's images.
    direction = _choice(rng, RESIZE_DIRECTIONS, second.resize_prob)
    factors = {"up": _uniform(rng, 1, second.resize_range[1]), "down": _uniform(rng, second.resize_range[0], 1),
               "keep": 1.0}
    size2 = (max(1, int(target[0] * factors[direction])), max(1, int(target[1] * factors[direction])))
    out = random_resize(out, rng, second.resize_prob, second.resize_range, size=size2)
    out = add_noise(out, rng, second.gaussian_noise_prob, second.noise_range, second.poisson_scale_range,
                    second.gray_noise_prob)

    if torch.rand((), generator=rng).item() < cfg.final_sinc_prob:
        size = int(_choice(rng, KERNEL_SIZES, [1.0] * len(KERNEL_SIZES)))
        final = sinc_kernel(_uniform(rng, math.pi / 3, math.pi), size).float()
    else:
        final = None
    final_kernels = None if final is None else final[None].expand(n, -1, -1)
    if torch.rand((), generator=rng).item() < 0.5:  # resize + sinc, then JPEG
        out = random_resize(out, rng, second.resize_prob, second.resize_range, size=target)
        out = filter2d(out, final_kernels) if final_kernels is not None else out
        out = jpeg(out, rng, second.jpeg_range)
    else:  # JPEG, then resize + sinc
        out = jpeg(out, rng, second.jpeg_range)
        out = random_resize(out, rng, second.resize_prob, second.resize_range, size=target)
        out = filter2d(out, final_kernels) if final_kernels is not None else out
    return (out.clamp(0, 1) * 255.0).round() / 255.0


def degrade_image(hr: np.ndarray, cfg: DegradationConfig = DegradationConfig(), seed: int = 0) -> np.ndarray:
    """Degrade one (H, W, 3) float32 RGB image in [0, 1] (mod-cropped by the caller) with a seed."""
    tensor = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None].float()
    lr = degrade(tensor, cfg, torch.Generator().manual_seed(seed))
    return lr[0].permute(1, 2, 0).numpy()
