"""Reading a request: one parser for the upscaling options, shared by an upload and an estimate,
and the limits every image must keep before any work or any file.

Every refusal is a typed error (`web.errors`) with a message a person can act on; a user's value
echoed in it is quoted and cut short (`quote`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace

from flask import current_app, request
from werkzeug.utils import secure_filename

from esrgan.errors import FacesUnavailableError, ImageTooLargeError, ModelNotFoundError, RemasterError
from esrgan.io.imageio import OUTPUT_FORMATS, DecodedImage, check_encodable, decode
from esrgan.models.registry import check_noise, check_outscale, output_size
from esrgan.sizing import check_output_size, scale_for_size
from web import figures
from web.errors import BadRequest
from web.jobs.estimate import job_priors
from web.jobs.record import Job
from web.jobs.storage import new_id
from web.service import services

TRUE_WORDS = {"true": True, "1": True, "on": True, "yes": True, "false": False, "0": False, "off": False, "no": False}
DEFAULT_QUALITY = 92
QUOTED_VALUE_CHARS = 60  # a user's value echoed in an error message is cut to this
AUTO_MODEL = "auto"  # the model field's word for "the route's choice", as an empty field


def quote(value: object) -> str:
    """A user's value for an error message: repr'd, and cut short so a huge field is not echoed."""
    text = repr(value)
    return text if len(text) <= QUOTED_VALUE_CHARS else text[: QUOTED_VALUE_CHARS - 3] + "..."


def parse_bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    try:
        return TRUE_WORDS[value.strip().lower()]
    except KeyError:
        raise BadRequest(f"{name} must be \"true\" or \"false\", not {quote(value)}") from None


def parse_format(value: str | None) -> str:
    """The output format a field asks for (png when empty; "jpeg" is "jpg")."""
    output_format = (value or "png").lower().replace("jpeg", "jpg")
    if output_format not in OUTPUT_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {quote(output_format)}")
    return output_format


def parse_quality(value: str | None) -> int:
    try:
        quality = int(value or DEFAULT_QUALITY)
    except ValueError:
        raise BadRequest("quality must be a whole number from 1 to 100") from None
    if not 1 <= quality <= 100:
        raise BadRequest("quality must be a whole number from 1 to 100")
    return quality


def parse_model(value: str | None, available: Collection[str]) -> str | None:
    """The model a field names, or None for the route's choice (empty or "auto"). Names only: a
    stranger must not make the server read files by path."""
    if not value or value == AUTO_MODEL:
        return None
    if value not in available:
        raise ModelNotFoundError(f"no model named {quote(value)}; see /api/models")
    return value


def parse_side(value: str | None, side_name: str) -> int | None:
    """A result's width or height in pixels, or None when the field is absent or empty. Refusals name
    the side in a person's words ("the result's width"), never the form field."""
    if value is None or value.strip() == "":
        return None
    try:
        side = int(value)
    except ValueError:
        raise BadRequest(f"the result's {side_name} must be a whole number of pixels, not {quote(value)}") from None
    if side < 1:
        raise BadRequest(f"the result's {side_name} must be a positive number of pixels, not {quote(value)}")
    return side


@dataclass(frozen=True)
class RequestOptions:
    """What a request asks of the upscaling (the fields of an upload, the query of an estimate).

    ``scale`` is None while the result is asked by size (``target_width`` or ``target_height``)
    and the image's size is not yet known: `for_image` turns the size into the scale.
    """

    scale: float | None
    anime: bool
    noise: str
    model: str | None  # None: the route's choice
    output_format: str
    quality: int
    target_width: int | None = None
    target_height: int | None = None
    keep_gps: bool = False
    tta: bool = False  # the 8 flips and transposes, averaged (`esrgan.tiling.tta`): best quality, 8x slower
    faces: bool = False  # restore faces with the checkpoint in weights/ (`esrgan.faces`)

    def for_image(self, width: int, height: int) -> RequestOptions:
        """These options for a ``width`` x ``height`` image: the scale its asked size needs (the
        asked side exact, aspect kept; `esrgan.sizing`). Raises UnsupportedScaleError past 1x..8x."""
        if self.target_width is None and self.target_height is None:
            return self
        return replace(self, scale=scale_for_size(width, height, self.target_width, self.target_height))


UPLOAD_SIZE_FIELDS = ("width", "height")  # an upload's fields for the result's size
ESTIMATE_SIZE_FIELDS = ("target_width", "target_height")  # an estimate's (its width, height: the input's)
SIDES = ("width", "height")  # the size fields' sides, in a person's words


def read_options(fields: Mapping[str, str], size_fields: tuple[str, str] = UPLOAD_SIZE_FIELDS) -> RequestOptions:
    """Validate the options of a form or a query string. The result is asked either by ``scale``
    or by one of ``size_fields`` (its width or its height), never both."""
    target_width, target_height = (parse_side(fields.get(name), side)
                                   for name, side in zip(size_fields, SIDES, strict=True))
    by_size = target_width is not None or target_height is not None
    if by_size and fields.get("scale"):
        raise BadRequest("give a scale or the result's width or height, not both")
    if target_width is not None and target_height is not None:
        raise BadRequest("give the result's width or its height, not both: the aspect is kept")
    return RequestOptions(
        scale=None if by_size else check_outscale(fields.get("scale")),
        anime=parse_bool(fields.get("anime"), "anime"),
        noise=check_noise(fields.get("noise")),
        model=parse_model(fields.get("model"), services().upscaler.store.entries()),
        output_format=parse_format(fields.get("format")),
        quality=parse_quality(fields.get("quality")),
        target_width=target_width, target_height=target_height,
        keep_gps=parse_bool(fields.get("keep_gps"), "keep_gps"),
        tta=parse_bool(fields.get("tta"), "tta"),
        faces=parse_faces(fields.get("faces")),
    )


def parse_faces(value: str | None) -> bool:
    """The faces field; asking for it where no face checkpoint is installed is refused with how to add one."""
    faces = parse_bool(value, "faces")
    if faces and services().runs_jobs and (missing := services().upscaler.faces.unavailable_reason()) is not None:
        raise FacesUnavailableError(missing)
    return faces


def work_pixels(width: int, height: int, model: str) -> int:
    """Pixels the model really processes for this image (the engine's own count where it has one)."""
    service = services()
    if not service.runs_jobs:  # a web node in front of workers loads no model to count
        return width * height
    return service.upscaler.work_pixels(width, height, model)


def limit_problems(width: int, height: int, options: RequestOptions, model: str) -> Iterator[RemasterError]:
    """What an image of ``width`` x ``height`` would break, in order: the output limit, the output
    format's limit, the input limit, then the work limit (MAX_WORK_PIXELS: tile context and padding
    counted, so a thin 1 x 4 million strip costs what it costs; only within the input limit, as the
    work of an absurd size is not worth counting). Lazy: a caller that stops at the first problem
    counts no work."""
    config = current_app.config
    out_width, out_height = output_size(width, height, options.scale)
    limit = services().upscaler.settings.max_output_pixels
    for check in (lambda: check_output_size(width, height, options.scale, limit),
                  lambda: check_encodable(options.output_format, out_width, out_height)):
        try:
            check()
        except RemasterError as exc:
            yield exc
    if width * height > config["MAX_INPUT_PIXELS"]:
        yield ImageTooLargeError(f"the image is larger than {figures.megapixels(config['MAX_INPUT_PIXELS'])} MP")
        return
    work, limit = work_pixels(width, height, model), int(config["MAX_WORK_PIXELS"])
    if work > limit:
        yield ImageTooLargeError(
            f"a {width}x{height} image would make the model process {figures.megapixels(work)} M pixels "
            f"(tile context and padding included); the limit is {figures.megapixels(limit)} M. "
            "Very thin or very large images cost the most: crop or downscale it first.")


@dataclass(frozen=True)
class Upload:
    """An uploaded still image, decoded within the limits, with its options (the scale known)."""

    name: str  # the file's name, made safe (`secure_filename`)
    data: bytes
    image: DecodedImage
    options: RequestOptions

    def route_model(self) -> str:
        """The model asked for, else the route's for these options."""
        options = self.options
        return options.model or services().upscaler.plan(options.scale, options.anime, noise=options.noise).model

    def check_limits(self, model: str) -> None:
        """Refuse the upload, before any work and any file, if its result with ``model`` would break a limit."""
        problem = next(limit_problems(self.image.width, self.image.height, self.options, model), None)
        if problem is not None:
            raise problem


def read_upload() -> Upload:
    """The request's image and options, validated and decoded (nothing stored yet)."""
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest("no file: send the image as the multipart field 'file'")
    if not upload.filename:
        raise BadRequest("the uploaded file has no name; choose a file to upload")
    options = read_options(request.form)
    data = upload.read()
    image = decode(data, max_pixels=int(current_app.config["MAX_INPUT_PIXELS"]))
    name = secure_filename(upload.filename) or "image"
    return Upload(name, data, image, options.for_image(image.width, image.height))


def job_from_request() -> Job:
    """Validate an upload and its options, store the input, and describe the job (not yet run).
    Everything the result could fail on is refused here, before any work and before any file."""
    upload = read_upload()
    image, options = upload.image, upload.options
    model = upload.route_model()
    upload.check_limits(model)
    service = services()
    job_id = new_id()
    input_file = service.files.write(job_id, "in", image.source_format, upload.data)
    output_width, output_height = output_size(image.width, image.height, options.scale)
    plan = service.upscaler.plan(options.scale, options.anime, model, noise=options.noise)
    priors = job_priors(model, image.width, image.height, options.scale, options.output_format,
                        plan.resample is not None, float(current_app.config["PREVIEW_MIN_SECONDS"]),
                        set(service.upscaler.store.entries()), service.runner.estimate_seconds,
                        options.tta)
    return Job(
        id=job_id, scale=options.scale, anime=options.anime, noise=options.noise, model=model,
        output_format=options.output_format, quality=options.quality,
        original_name=upload.name, input_file=input_file,
        input_width=image.width, input_height=image.height, output_width=output_width, output_height=output_height,
        keep_gps=options.keep_gps, tta=options.tta, faces=options.faces,
        preview_estimate=round(priors.preview, 1), finish_estimate=round(priors.finish, 1),
    )
