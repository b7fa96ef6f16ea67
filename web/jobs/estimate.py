"""What the server tells before any work: the plan in words, what a choice ignores, the options
each route offers, and the seconds a whole job takes (preview, upscaling, resample and encoding).

Everything here comes from the registry's routes and the engine's rates, never from lists of its
own, so a model or a noise level the registry gains shows up without a change here or in the page.
"""

from __future__ import annotations

from collections.abc import Callable

from esrgan.errors import RemasterError
from esrgan.models import registry
from esrgan.models.catalogue import ModelEntry
from esrgan.models.registry import Plan, output_size
from esrgan.pipeline import Upscaler
from esrgan.tiling.tta import passes_for
from web.jobs.compare import COMPARE, compare_work
from web.jobs.eta import Priors
from web.jobs.preview import PREVIEW_MAX_PIXELS, preview_model
from web.jobs.record import Job

# Seconds per megapixel of output, measured on the 2-core AMD EPYC (Zen 4, AVX-512) at load 16
# (other helpers' work): a 1600x1200 result, PNG level 6 / JPEG and WebP quality 92; the Lanczos
# resample of a float image, per output megapixel. A courtesy in an estimate, never a limit.
ENCODE_SECONDS_PER_MEGAPIXEL = {"png": 0.28, "jpg": 0.04, "webp": 0.41}
RESAMPLE_SECONDS_PER_MEGAPIXEL = 0.19

EstimateFn = Callable[[str, int, int], float]  # (model, width, height) -> seconds of upscaling


def plan_text(plan: Plan, title: str) -> str:
    """The route in words: "Will use Real-CUGAN 2x no-denoise (native 2x), then Lanczos up to 2.5x"."""
    text = f"Will use {title} (native {plan.native_scale}x)"
    if plan.resample is not None:
        direction = "up" if plan.scale > plan.native_scale else "down"
        text += f", then Lanczos {direction} to {plan.scale:g}x"
    return text


def plan_view(plan: Plan, entry: ModelEntry | None) -> dict:
    """The plan as the estimate shows it: ``model``, ``title``, ``native_scale``, ``scale``,
    ``resample`` (None when the model's output is the result) and ``text``."""
    title = entry.title if entry is not None else plan.model
    return {"model": plan.model, "title": title, "native_scale": plan.native_scale, "scale": plan.scale,
            "resample": plan.resample, "text": plan_text(plan, title)}


def option_warnings(entry: ModelEntry | None, chosen_by_hand: bool, anime: bool, noise: str) -> list[str]:
    """What a model picked by hand ignores of the other options (sent anyway: the model is what it
    is), naming the model by its title. The route's own choice honours every option it is offered for."""
    if not chosen_by_hand or entry is None:
        return []
    warnings = []
    if noise != "none" and entry.noise is None:
        warnings.append(f"{entry.title} has no noise reduction: the noise level {noise!r} is ignored")
    elif noise != "none" and entry.noise != noise:
        warnings.append(f"{entry.title} reduces noise at its own level ({entry.noise}): {noise!r} is ignored")
    if anime != entry.anime and entry.family != "custom":
        trained = "anime and illustration" if entry.anime else "photos"
        warnings.append(f"{entry.title} is trained for {trained}: the content type is ignored")
    return warnings


def route_choices(upscaler: Upscaler) -> list[dict]:
    """Per route scale and content: the noise levels the registry has a model for (``noise_levels``),
    those whose model is installed here (``available_noise_levels``), and the models that honour a
    noise level at that scale (``noise_models``: name -> level)."""
    present = upscaler.store.entries()

    def chains(scale: int, anime: bool, level: str) -> list[tuple[str, ...]]:  # a route lists names or chains
        return [(entry,) if isinstance(entry, str) else tuple(entry) for entry in registry.route(scale, anime, level)]

    rows = []
    for scale in registry.ROUTE_SCALES:
        for anime in (False, True):
            levels = [lv for lv in registry.NOISE_LEVELS if registry.route(scale, anime, lv)]
            available = [lv for lv in levels
                         if any(all(m in present for m in chain) for chain in chains(scale, anime, lv))]
            models = {name: registry.spec(name).noise for lv in levels for chain in chains(scale, anime, lv)
                      for name in chain if registry.spec(name).noise is not None}
            rows.append({"scale": scale, "anime": anime, "noise_levels": levels,
                         "available_noise_levels": available, "noise_models": models})
    return rows


def finish_seconds(width: int, height: int, output_format: str, resampled: bool) -> float:
    """The resample after the network (when the plan has one) and the encoding of a ``width`` x
    ``height`` result."""
    megapixels = width * height / 1e6
    rate = ENCODE_SECONDS_PER_MEGAPIXEL.get(output_format, ENCODE_SECONDS_PER_MEGAPIXEL["png"])
    return megapixels * (rate + (RESAMPLE_SECONDS_PER_MEGAPIXEL if resampled else 0.0))


def preview_seconds(model: str, width: int, height: int, scale: float, upscale_seconds: float,
                    min_seconds: float, available: set[str], estimate: EstimateFn) -> float:
    """The quick preview `web.jobs.preview` makes for a job this long (0 when it makes none): the quick
    model over the input shrunk to fit, or a resample where that model is not installed, then a PNG."""
    quick = preview_model(model)
    if quick is None or upscale_seconds < min_seconds:
        return 0.0
    fit = min(1.0, (PREVIEW_MAX_PIXELS / scale**2 / (width * height)) ** 0.5)
    source = (max(1, int(width * fit)), max(1, int(height * fit)))
    out_width, out_height = output_size(*source, scale)
    seconds = finish_seconds(out_width, out_height, "png", quick not in available)
    if quick in available:
        seconds += estimate(quick, *source)
    return seconds


def job_priors(model: str, width: int, height: int, scale: float, output_format: str, resampled: bool,
               min_preview_seconds: float, available: set[str], estimate: EstimateFn, tta: bool = False) -> Priors:
    """Each part of a job's time, predicted (see `web.jobs.eta`); with ``tta`` the upscaling runs 8
    passes per tile, so it takes 8 times as long (the quick preview runs without)."""
    try:
        upscale = estimate(model, width, height) * passes_for(tta)
    except RemasterError:
        return Priors(None)
    out_width, out_height = output_size(width, height, scale)
    return Priors(
        upscale=upscale,
        preview=preview_seconds(model, width, height, scale, upscale, min_preview_seconds, available, estimate),
        finish=finish_seconds(out_width, out_height, output_format, resampled),
    )


def work_seconds(job: Job, estimate: EstimateFn) -> float:
    """Seconds of network work ``job`` asks for: a compare's run per model on the crop's window, else
    the image (every frame of a video) times its passes (8 with TTA)."""
    if job.kind == COMPARE:
        return sum(estimate(model, width, height) for model, width, height in compare_work(job))
    return estimate(job.model, job.input_width, job.input_height) * job.frames * passes_for(job.tta)
