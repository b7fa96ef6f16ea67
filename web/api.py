"""HTTP API: the synchronous ``POST /upscale``, the job API, file serving, models and estimates.

Every error is JSON ``{"error": "..."}`` with a 4xx status (503 + Retry-After when the queue is
full), and an error leaves no file behind.
"""

from __future__ import annotations

import errno
import logging
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path, PurePath

from flask import Blueprint, current_app, jsonify, request, send_file, send_from_directory, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.utils import secure_filename

from esrgan.errors import ImageTooLargeError, ModelNotFoundError, RemasterError
from esrgan.imageio import OUTPUT_FORMATS, check_encodable, decode, encode
from esrgan.registry import check_noise, check_outscale, output_size
from web.errors import BadRequest, NotFound, QueueFull, http_status
from web.lifecycle import Job
from web.service import remaster
from web.storage import FILE_NAME, new_id

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)

TRUE_WORDS = {"true": True, "1": True, "on": True, "yes": True, "false": False, "0": False, "off": False, "no": False}
DEFAULT_QUALITY = 92
MAX_ZIP_JOBS = 100  # distinct ids one jobs.zip request may name
SHOWN_VALUE_CHARS = 60  # a user's value echoed in an error message is cut to this
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "bmp": "image/bmp", "tiff": "image/tiff"}


# --- errors ------------------------------------------------------------------------------------

@bp.app_errorhandler(RemasterError)
def engine_error(error: RemasterError):
    response = jsonify(error=str(error))
    response.status_code = http_status(error)
    if isinstance(error, QueueFull):
        response.headers["Retry-After"] = str(current_app.config["RETRY_AFTER_SECONDS"])
    return response


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    messages = {413: f"the upload is larger than {current_app.config['MAX_CONTENT_LENGTH'] / 2**20:g} MB"}
    response = jsonify(error=messages.get(error.code, error.description))
    response.status_code = error.code or 500
    # Keep what werkzeug's own answer says beyond the text: Allow on a 405 (RFC 9110 requires it),
    # WWW-Authenticate, Retry-After...
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@bp.app_errorhandler(OSError)
def os_error(error: OSError):
    """A full disk (writing an upload, a spooled form, a result) is 507; anything else a plain 500."""
    if error.errno in DISK_FULL:
        log.warning("disk full: %s", error)
        response = jsonify(error="the server's disk is full; nothing was kept. Try again later.")
        response.status_code = 507
        return response
    log.exception("unexpected error")
    response = jsonify(error="internal error")
    response.status_code = 500
    return response


# --- reading a request -------------------------------------------------------------------------

def shown(value: object) -> str:
    """A user's value for an error message: repr'd, and cut short so a huge field is not echoed."""
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


def parse_bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    try:
        return TRUE_WORDS[value.strip().lower()]
    except KeyError:
        raise BadRequest(f"{name} must be \"true\" or \"false\", not {shown(value)}") from None


def parse_format(value: str | None) -> str:
    """The output format a field asks for (png when empty; "jpeg" is "jpg")."""
    output_format = (value or "png").lower().replace("jpeg", "jpg")
    if output_format not in OUTPUT_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {shown(output_format)}")
    return output_format


def work_pixels(width: int, height: int, model: str) -> int:
    """Pixels the model really processes for this image (the engine's own count where it has one)."""
    service = remaster()
    if not service.runs_jobs:  # a web node in front of workers loads no model to count
        return width * height
    return service.upscaler.work_pixels(width, height, model)


def check_work(width: int, height: int, work: int) -> None:
    """Refuse an image whose run would process more than MAX_WORK_PIXELS (see `work_pixels`): the
    work counts tile context and padding, so a thin 1 x 4 million strip costs what it costs."""
    limit = int(current_app.config["MAX_WORK_PIXELS"])
    if work > limit:
        raise ImageTooLargeError(
            f"a {width}x{height} image would make the model process {work / 1e6:.1f} M pixels "
            f"(tile context and padding included); the limit is {limit / 1e6:.1f} M. "
            "Very thin or very large images cost the most: crop or downscale it first."
        )


def job_from_request() -> Job:
    """Validate an upload and its options, store the input, and describe the job (not yet run)."""
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest("no file: send the image as the multipart field 'file'")
    if not upload.filename:
        raise BadRequest("the uploaded file has no name; choose a file to upload")
    scale = check_outscale(request.form.get("scale"))
    anime = parse_bool(request.form.get("anime"), "anime")
    noise = check_noise(request.form.get("noise"))
    model = request.form.get("model") or None
    model = None if model == "auto" else model
    if model is not None and model not in remaster().upscaler.store.entries():
        # Names only: a stranger must not make the server read files by path.
        raise ModelNotFoundError(f"no model named {shown(model)}; see /api/models")
    output_format = parse_format(request.form.get("format"))
    try:
        quality = int(request.form.get("quality") or DEFAULT_QUALITY)
    except ValueError:
        raise BadRequest("quality must be a whole number from 1 to 100") from None
    if not 1 <= quality <= 100:
        raise BadRequest("quality must be a whole number from 1 to 100")

    data = upload.read()
    image = decode(data, max_pixels=int(current_app.config["MAX_INPUT_PIXELS"]))
    service = remaster()
    plan = service.upscaler.plan(scale, anime, model, noise=noise)
    output_width, output_height = output_size(image.width, image.height, scale)
    # Everything the result could fail on is refused here, before any work and before any file.
    service.upscaler.check_output_size(image.width, image.height, scale)
    check_encodable(output_format, output_width, output_height)
    check_work(image.width, image.height, work_pixels(image.width, image.height, model or plan.model))
    job_id = new_id()
    input_file = service.files.write(job_id, "in", image.source_format, data)
    return Job(
        id=job_id, scale=scale, anime=anime, noise=noise, model=model or plan.model, output_format=output_format,
        quality=quality, original_name=secure_filename(upload.filename) or "image", input_file=input_file,
        input_width=image.width, input_height=image.height,
        output_width=output_width, output_height=output_height,
    )


def submit(job: Job) -> Job:
    try:
        return remaster().runner.submit(job)
    except QueueFull:
        remaster().files.delete_job(job.id)
        raise


# --- views of a job ----------------------------------------------------------------------------

def download_name(job: Job, role: str) -> str:
    stem = PurePath(job.original_name).stem or "image"
    if role == "in":
        return f"{stem}.{PurePath(job.input_file).suffix.lstrip('.')}"
    return f"{stem}_x{job.scale:g}.{job.output_format}"


def file_url(name: str | None, **args) -> str | None:
    return url_for("api.uploads", name=name, **args) if name else None


def result_view(job: Job) -> dict:
    """The seed's synchronous contract, plus how the result was made."""
    provenance = job.provenance or {}
    return {
        "job_id": job.id,
        "original_path": file_url(job.input_file),
        "output_path": file_url(job.output_file),
        "download_path": file_url(job.output_file, download=1),
        "original_width": job.input_width,
        "original_height": job.input_height,
        "output_width": job.output_width,
        "output_height": job.output_height,
        "model": provenance.get("model"),
        "native_scale": provenance.get("native_scale"),
        "resample": provenance.get("resample"),
        "provenance": provenance,
    }


def status_view(job: Job) -> dict:
    """A job as the page and API clients see it (contract C2; the README tells it)."""
    runner = remaster().runner
    calibration = runner.calibration_seconds() if job.stage in ("queued", "calibrating") else None
    view = {
        "id": job.id,
        "status": job.status,
        "stage": job.shown_stage,
        "stage_text": job.stage_text(calibration),
        "scale": job.scale,
        "anime": job.anime,
        "noise": job.noise,
        "model": job.model,
        "original_name": job.original_name,
        "progress": {"done": job.steps_done, "total": job.steps_total, "fraction": round(job.fraction, 4)},
        "elapsed_seconds": job.elapsed_seconds(),
        "eta_seconds": job.eta_seconds(ahead=runner.ahead_seconds(job), calibration=calibration),
        "cancel_requested": job.cancel_requested,
        "preview_url": file_url(job.preview_file),
        "before_url": url_for("api.job_before", job_id=job.id),
        "error": job.error,
        "status_url": url_for("api.job_status", job_id=job.id),
        "expires_at": round(job.created_at + float(current_app.config["FILE_TTL_SECONDS"])),
    }
    if job.status == "done":
        view["result"] = result_view(job)
    return view


def finished_job_response(job: Job):
    if job.status == "done":
        return jsonify(result_view(job))
    response = jsonify(error=job.error or f"job {job.status}")
    response.status_code = job.error_status or 500
    return response


def needs_rendering(path: Path) -> bool:
    """Browsers show no TIFF, and some no 16-bit PNG: those originals are shown as 8-bit PNG."""
    with path.open("rb") as handle:
        head = handle.read(25)
    return path.suffix == ".tiff" or (head.startswith(b"\x89PNG") and len(head) == 25 and head[24] == 16)


# --- routes ------------------------------------------------------------------------------------

@bp.post("/upscale")
def upscale():
    """Synchronous: answers when the result is ready."""
    job = submit(job_from_request())
    job = remaster().runner.wait(job.id, timeout=float(current_app.config["SYNC_TIMEOUT_SECONDS"]))
    if job.status not in ("done", "failed", "cancelled"):
        response = jsonify(error="still working; poll the job", status_url=url_for("api.job_status", job_id=job.id))
        response.status_code = 202
        return response
    return finished_job_response(job)


@bp.post("/api/jobs")
def create_job():
    job = submit(job_from_request())
    response = jsonify(status_view(job))
    response.status_code = 202
    response.headers["Location"] = url_for("api.job_status", job_id=job.id)
    return response


def _job_or_404(job_id: str) -> Job:
    job = remaster().runner.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} (jobs expire after {current_app.config['FILE_TTL_SECONDS']} s)")
    return job


@bp.get("/api/jobs/<job_id>")
def job_status(job_id: str):
    return jsonify(status_view(_job_or_404(job_id)))


@bp.delete("/api/jobs/<job_id>")
def cancel_job(job_id: str):
    """Cancel: a queued job ends at once, a running one within a network step (the answer then
    says stage "cancelling"); a finished job is answered as it is."""
    _job_or_404(job_id)
    job = remaster().runner.cancel(job_id)
    if job is None:  # expired between the two looks
        raise NotFound(f"no job {job_id!r}")
    return jsonify(status_view(job))


@bp.get("/api/jobs/<job_id>/before")
def job_before(job_id: str):
    """The original as a browser shows it: the upload itself, or (TIFF, 16-bit) a PNG made once."""
    job = _job_or_404(job_id)
    files = remaster().files
    if not files.exists(job.input_file):
        raise NotFound("the original has expired")
    if not needs_rendering(files.resolve(job.input_file)):
        return _send(job.input_file, job, download=False)
    name = files.path(job.id, "before", "png").name
    if not files.exists(name):
        image = decode(files.read(job.input_file), max_pixels=None)
        files.write(job.id, "before", "png", encode(replace(image, bit_depth=8), "png"))
    return _send(name, job, download=False)


@bp.get("/api/jobs/<job_id>/result")
def job_result(job_id: str):
    job = _job_or_404(job_id)
    if job.status != "done":
        response = jsonify(error=f"the job is {job.status}", status=job.status)
        response.status_code = 409
        return response
    if not job.output_file or not remaster().files.exists(job.output_file):
        response = jsonify(error=f"the result has expired (results are kept "
                                 f"{current_app.config['FILE_TTL_SECONDS']} s); upscale the image again")
        response.status_code = 410
        return response
    return _send(job.output_file, job, download=True)


@bp.get("/api/jobs.zip")
def jobs_zip():
    """All finished outputs of the given jobs (``?ids=a,b,c``) in one ZIP.

    Each job counts once however often it is named, at most MAX_ZIP_JOBS of them; jobs whose
    output has expired are left out, and 404 when none is left.
    """
    ids = list(dict.fromkeys(i.strip() for i in request.args.get("ids", "").split(",") if i.strip()))
    if not ids:
        raise BadRequest("name the jobs: /api/jobs.zip?ids=<id>,<id>,...")
    if len(ids) > MAX_ZIP_JOBS:
        raise BadRequest(f"at most {MAX_ZIP_JOBS} different jobs in one ZIP, not {len(ids)}; ask in parts")
    files = remaster().files
    outputs = []
    for job in (remaster().runner.get(i) for i in ids):
        if job is None or job.status != "done" or not job.output_file:
            continue
        try:
            outputs.append((job, files.resolve(job.output_file)))
        except ValueError:
            continue
    outputs = [(job, path) for job, path in outputs if path.is_file()]
    if not outputs:
        raise NotFound(f"none of these jobs has a result any more (results expire after "
                       f"{current_app.config['FILE_TTL_SECONDS']} s)")
    spool = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)
    used: set[str] = set()
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
        for job, path in outputs:
            name = download_name(job, "out")
            while name in used:
                name = f"{PurePath(name).stem}-{job.id[:6]}{PurePath(name).suffix}"
            used.add(name)
            try:
                archive.write(path, name)
            except FileNotFoundError:  # expired between the look and the copy
                used.discard(name)
    spool.seek(0)
    return send_file(spool, mimetype="application/zip", as_attachment=True, download_name="remaster.zip")


@bp.get("/uploads/<name>")
def uploads(name: str):
    """Serve only files this app stored, under the name the user would expect."""
    match = FILE_NAME.match(name)
    job = remaster().runner.get(match["id"]) if match else None
    before = f"{job.id}_before.png" if job else None
    if job is None or name not in (job.input_file, job.output_file, job.preview_file, before):
        raise NotFound("no such file (files expire after an hour)")
    return _send(name, job, download=request.args.get("download") == "1")


def _send(name: str, job: Job, download: bool):
    role = FILE_NAME.match(name)["role"]
    stem = PurePath(download_name(job, "in")).stem
    shown_name = {"in": download_name(job, "in"), "out": download_name(job, "out"),
                  "preview": f"{stem}_preview.png", "before": f"{stem}.png"}[role]
    response = send_from_directory(
        remaster().files.root, name, mimetype=MIME[PurePath(name).suffix.lstrip(".")],
        as_attachment=download, download_name=shown_name, max_age=600,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/api/models")
def models():
    """Every model (contract C3): family, native scale, noise level, licence, source, measured speed."""
    from esrgan.listing import models_listing

    service = remaster()
    listing = models_listing(service.upscaler)
    listing["unavailable"] = service.upscaler.store.unavailable()
    listing["limits"] = {"max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"],
                         "max_input_pixels": current_app.config["MAX_INPUT_PIXELS"],
                         "max_output_pixels": current_app.config["MAX_OUTPUT_PIXELS"]}
    return jsonify(listing)


@bp.get("/api/estimate")
def estimate():
    """Output size and estimated seconds for an image of ``width`` x ``height``."""
    try:
        width, height = int(request.args["width"]), int(request.args["height"])
    except (KeyError, ValueError):
        raise BadRequest("width and height must be whole numbers") from None
    if width < 1 or height < 1:
        raise BadRequest("width and height must be positive")
    scale = check_outscale(request.args.get("scale"))
    anime = parse_bool(request.args.get("anime"), "anime")
    noise = check_noise(request.args.get("noise"))
    model = request.args.get("model") or None
    service = remaster()
    if model not in (None, "auto") and model not in service.upscaler.store.entries():
        raise ModelNotFoundError(f"no model named {shown(model)}; see /api/models")
    output_format = parse_format(request.args.get("format"))
    plan = service.upscaler.plan(scale, anime, None if model == "auto" else model, noise=noise)
    out_width, out_height = output_size(width, height, scale)
    errors = []
    work = width * height
    if width * height > current_app.config["MAX_INPUT_PIXELS"]:
        errors.append(f"the image is larger than {current_app.config['MAX_INPUT_PIXELS'] / 1e6:.1f} MP")
    else:
        # Only within the input limit: the work of an absurd size is not worth computing.
        work = work_pixels(width, height, plan.model)
        try:
            check_work(width, height, work)
        except RemasterError as exc:
            errors.append(str(exc))
    for check in (lambda: service.upscaler.check_output_size(width, height, scale),
                  lambda: check_encodable(output_format, out_width, out_height)):
        try:
            check()
        except RemasterError as exc:
            errors.append(str(exc))
    return jsonify(
        output_width=out_width, output_height=out_height, model=plan.model, resample=plan.resample,
        # The runner's rate is per pixel the model really processes (a thin strip costs its padding too).
        seconds=round(service.runner.estimate_seconds(plan.model, width, height), 1), work_pixels=work,
        errors=errors,
    )


@bp.get("/healthz")
def health():
    return jsonify(status="ok", **remaster().runner.stats())
