"""Every training option in one typed place; a YAML file and the command line fill it in."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import yaml

from esrgan.degrade import DegradationConfig
from esrgan.errors import RemasterError

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

    @property
    def model_name(self) -> str:
        return MODEL_ALIASES.get(self.model, self.model)


def load_config(path: Path | None, overrides: dict) -> TrainConfig:
    """Defaults, then the YAML file, then the command line's explicit options."""
    values: dict = {}
    if path is not None:
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RemasterError(f"cannot read the config {path}: {exc}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise RemasterError(f"unknown training options: {', '.join(sorted(unknown))}")
    degradation = values.pop("degradation", None) or {}
    for key in ("milestones", "split"):
        if key in values:
            values[key] = tuple(values[key])
    config = replace(TrainConfig(), **values)
    if isinstance(degradation, dict):
        config = replace(config, degradation=replace(DegradationConfig(), **{
            k: tuple(v) if isinstance(v, list) else v for k, v in degradation.items()}))
    return config
