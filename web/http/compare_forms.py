"""Reading a compare request: the crop and the models asked beside an upload's fields, checked
before any work and before any file; the compare job it becomes (`web.jobs.compare` runs it); and
the proposal a page starts from (the most detailed region, the models a compare would try).

An upload's limits hold as for an upscale (the whole image with the model the route picks): a
comparison is the first step of that upscale. The crop must lie inside the image and keep to
`esrgan.compare.MAX_CROP_PIXELS`. Each refusal is a typed error with its reason (`web.errors`).
"""

from __future__ import annotations

from collections.abc import Collection

from flask import request

from esrgan.compare import MAX_CROP_PIXELS, Crop, candidates, check_crop, most_detailed
from esrgan.errors import WeightsError
from esrgan.models.registry import output_size
from web.errors import BadRequest
from web.http.forms import RequestOptions, Upload, parse_model, quote, read_upload
from web.jobs.compare import COMPARE, crop_view
from web.jobs.record import Job
from web.jobs.storage import new_id
from web.service import services

MAX_COMPARE_MODELS = 8  # models one comparison may try: each is a run of the crop's window


def parse_crop(value: str | None) -> Crop | None:
    """The ``crop`` field, ``X,Y,W,H`` in whole input pixels; None when absent or empty."""
    if value is None or not value.strip():
        return None
    try:
        x, y, w, h = (int(part) for part in value.split(","))
    except ValueError:
        raise BadRequest(f"crop must be X,Y,W,H in whole pixels (e.g. 16,8,64,48), not {quote(value)}") from None
    return x, y, w, h


def parse_models(value: str | None, available: Collection[str]) -> list[str] | None:
    """The ``models`` field: comma-separated names, each once; None when absent or empty."""
    names = list(dict.fromkeys(name.strip() for name in (value or "").split(",") if name.strip()))
    if len(names) > MAX_COMPARE_MODELS:
        raise BadRequest(f"at most {MAX_COMPARE_MODELS} models in one comparison, not {len(names)}")
    for name in names:
        parse_model(name, available)
    return names or None


def default_models(options: RequestOptions) -> list[str]:
    """The model chosen in the form (if any), then the route's and its alternatives installed here."""
    found = candidates(services().upscaler, options.scale, options.anime, options.noise)
    names = list(dict.fromkeys([*([options.model] if options.model else []), *found]))
    if not names:
        raise WeightsError("no model to compare is installed here; see /api/models")
    return names[:MAX_COMPARE_MODELS]


def checked_crop(upload: Upload, crop: Crop | None) -> Crop:
    """The crop asked, if it fits the image and the size limit; the most detailed region when None."""
    image = upload.image
    return check_crop(crop, image.width, image.height) if crop is not None else most_detailed(image.rgb())


def compare_job_from_request() -> Job:
    """Validate a compare request, store its image, and describe the job (not yet run)."""
    crop = parse_crop(request.form.get("crop"))
    service = services()
    asked = parse_models(request.form.get("models"), service.upscaler.store.entries())
    upload = read_upload()
    crop = checked_crop(upload, crop)
    upload.check_limits(upload.route_model())
    models = asked or default_models(upload.options)
    image, options = upload.image, upload.options
    job_id = new_id()
    input_file = service.files.write(job_id, "in", image.source_format, upload.data)
    output_width, output_height = output_size(crop[2], crop[3], options.scale)
    return Job(
        id=job_id, scale=options.scale, anime=options.anime, noise=options.noise, model=models[0],
        output_format="png", quality=options.quality, original_name=upload.name, input_file=input_file,
        input_width=image.width, input_height=image.height, output_width=output_width, output_height=output_height,
        kind=COMPARE, media={"crop": list(crop), "models": models, "candidates": []},
    )


def proposal_from_request() -> dict:
    """What a comparison of the uploaded image would start from (nothing is stored): ``crop`` (the
    most detailed region), ``image_width``, ``image_height``, ``max_crop_pixels``, and ``models``
    (each ``model``, ``title``, ``note``: what `compare_job_from_request` tries when none is named)."""
    upload = read_upload()
    entries = services().upscaler.store.entries()
    return {
        "crop": crop_view(most_detailed(upload.image.rgb())),
        "image_width": upload.image.width, "image_height": upload.image.height, "max_crop_pixels": MAX_CROP_PIXELS,
        "models": [{"model": name, "title": entries[name].title, "note": entries[name].note}
                   for name in default_models(upload.options)],
    }
