"""Every training option in one typed place; a YAML file and the command line fill it in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import yaml

from esrgan.errors import ConfigError
from esrgan.quality.degrade import DegradationConfig

PIXEL_LOSSES = ("l1", "mse")
MODEL_ALIASES = {"x4plus": "realesrgan-x4plus", "anime": "realesrgan-x4plus-anime",
                 "x4plus-anime": "realesrgan-x4plus-anime", "animevideov3": "realesr-animevideov3"}


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning options (Real-ESRGAN's defaults where it has them).

    Attributes:
        model: Registry name (or alias: x4plus, anime, animevideov3) or checkpoint path to start from.
        freeze: Parameters kept fixed: comma-separated name prefixes; ``body.0-15`` expands to
            ``body.0`` ... ``body.15``; an empty string trains everything. Default: the first conv and
            about the first 70% of the body (x4plus: ``conv_first,body.0-15``).
        pixel_loss: ``l1`` or ``mse``.
        pixel_weight, perceptual_weight, gan_weight: Loss term weights (perceptual 0 disables VGG).
        lr_g, lr_d: Adam learning rates; milestones: MultiStepLR steps (halving at each).
        ema_decay: Decay of the generator's exponential moving average (0 disables it).
        grad_clip: Clip gradient norms to this (0: no clipping).
        val_every: Validate (PSNR/SSIM-Y on the val split) every this many iterations.
        patience: Stop after this many validations without a better PSNR (0: never).
        amp: Mixed precision on CUDA.
    """

    model: str = "x4plus"
    iters: int = 2000
    patch: int = 64
    batch: int = 4
    freeze: str | None = None  # None: the architecture's default (see loop.default_freeze)
    pixel_loss: Literal["l1", "mse"] = "l1"
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    gan_weight: float = 0.1
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    milestones: tuple[int, ...] = ()
    ema_decay: float = 0.999
    grad_clip: float = 0.0
    val_every: int = 200
    val_crop: int = 192
    patience: int = 0
    amp: bool = True
    seed: int = 0
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    device: str = "auto"
    name: str = ""
    degradation: DegradationConfig = field(default_factory=DegradationConfig)

    def __post_init__(self) -> None:
        """Refuse, with the option's name, a value that cannot work (a YAML typo, a negative size)."""
        whole = {"iters": 1, "patch": 1, "batch": 1, "val_every": 1, "val_crop": 1, "patience": 0, "seed": 0}
        for name, least in whole.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"training option {name} must be a whole number >= {least}, not {value!r}")
        for name in ("pixel_weight", "perceptual_weight", "gan_weight", "grad_clip", "lr_g", "lr_d"):
            value = getattr(self, name)
            positive = name.startswith("lr_")
            if not _is_number(value) or value < 0 or (positive and value == 0):
                raise ConfigError(f"training option {name} must be a number {'>' if positive else '>='} 0, "
                                  f"not {value!r}")
        if not _is_number(self.ema_decay) or not 0 <= self.ema_decay < 1:
            raise ConfigError(f"training option ema_decay must be in [0, 1), not {self.ema_decay!r}")
        if self.pixel_loss not in PIXEL_LOSSES:
            raise ConfigError(f"training option pixel_loss must be one of {', '.join(PIXEL_LOSSES)}, "
                              f"not {self.pixel_loss!r}")
        if not isinstance(self.milestones, tuple) or not all(isinstance(m, int) and m > 0 for m in self.milestones):
            raise ConfigError(f"training option milestones must be iteration numbers, not {self.milestones!r}")
        split = self.split
        if (not isinstance(split, tuple) or len(split) != 3 or not all(_is_number(f) and f >= 0 for f in split)
                or abs(sum(split) - 1) > 1e-6):
            raise ConfigError(f"training option split must be three fractions (train, val, test) summing to 1, "
                              f"not {split!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("training option model must name a model or a checkpoint file")

    @property
    def model_name(self) -> str:
        return MODEL_ALIASES.get(self.model, self.model)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_config(path: Path | None, overrides: dict) -> TrainConfig:
    """Defaults, then the YAML file, then the command line's explicit options.

    The ``degradation`` section takes Real-ESRGAN's option names (see
    `DegradationConfig.from_options`).

    Raises:
        ConfigError: The file cannot be read, or an option is unknown or has a value that cannot work.
    """
    values: dict = {}
    if path is not None:
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the config {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"the config {path} must be a mapping of option: value")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown training options: {', '.join(sorted(unknown))}")
    degradation = values.pop("degradation", None) or {}
    if not isinstance(degradation, dict):
        raise ConfigError("the degradation section must be a mapping of Real-ESRGAN option: value")
    for key in ("milestones", "split"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    return replace(TrainConfig(), **values, degradation=DegradationConfig.from_options(degradation))
