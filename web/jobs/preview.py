"""A job's quick preview: a look at the result while a heavy model works (best effort).

The model that makes it is the heavy model's registry fact (`ModelSpec.preview_model`); where it is
not installed, a plain resample stands in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from esrgan.errors import ModelNotFoundError
from esrgan.io.imageio import DecodedImage, encode
from esrgan.models import registry
from esrgan.models.registry import output_size
from esrgan.pipeline import Upscaler
from esrgan.result import resample
from web.jobs.record import Job
from web.jobs.storage import FileStore

PREVIEW_MAX_PIXELS = 2048 * 2048  # a preview is for looking at, not for keeping: its input is shrunk to fit


def preview_model(model: str | None) -> str | None:
    """The model that previews ``model``'s jobs; None when ``model`` is itself the quick one. A
    custom checkpoint is previewed like a registered model."""
    try:
        return registry.spec(model).preview_model if model else registry.ModelSpec.preview_model
    except ModelNotFoundError:
        return registry.ModelSpec.preview_model


def wants_preview(job: Job, min_seconds: float) -> bool:
    """Whether ``job`` is expected to take long enough (and with a heavy enough model) to get one."""
    return preview_model(job.model) is not None and (job.estimate_seconds or 0) >= min_seconds


def downscale_to_fit(image: DecodedImage, max_pixels: int) -> DecodedImage:
    """``image`` resampled (Lanczos, alpha too) to at most ``max_pixels``; itself when it fits."""
    if image.width * image.height <= max_pixels:
        return image
    fit = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * fit)), max(1, int(image.height * fit)))
    return replace(image, pixels=resample(image.pixels, size))


def make_preview(job: Job, image: DecodedImage, upscaler: Upscaler, files: FileStore,
                 cancelled: Callable[[], bool], stage: Callable[[str], None]) -> str:
    """Upscale a shrunk copy of the input (the preview stays under PREVIEW_MAX_PIXELS) with the
    preview model, or resample it where that model is not installed; store it as the job's
    "preview" PNG and return the file's name.

    Raises:
        Cancelled: ``cancelled`` said so. Other `RemasterError` and `OSError`: no preview.
    """
    quick = preview_model(job.model)
    source = downscale_to_fit(image, max(1, int(PREVIEW_MAX_PIXELS / job.scale**2)))
    if quick is not None and quick in upscaler.store.entries():
        result = upscaler.upscale(source, job.scale, model=quick, cancelled=cancelled, stage=stage).image
    else:
        result = replace(source, pixels=resample(source.pixels, output_size(source.width, source.height, job.scale)))
    return files.write(job.id, "preview", "png", encode(replace(result, bit_depth=8), "png"))
