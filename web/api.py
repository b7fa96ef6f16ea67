"""HTTP API: the synchronous ``POST /upscale``, the job API, file serving, models and estimates.

Every error is JSON ``{"error": "..."}`` with a 4xx status (503 + Retry-After when the queue is
full), and an error leaves no file behind.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import PurePath

from flask import Blueprint, current_app, jsonify, request, send_file, send_from_directory, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.utils import secure_filename

from esrgan.errors import ModelNotFoundError, RemasterError
from esrgan.imageio import OUTPUT_FORMATS, decode
from esrgan.registry import check_scale
from web.errors import BadRequest, NotFound, QueueFull, http_status
from web.jobs import Job
from web.service import remaster
from web.storage import FILE_NAME, new_id

bp = Blueprint("api", __name__)

TRUE_WORDS = {"true": True, "1": True, "on": True, "yes": True, "false": False, "0": False, "off": False, "no": False}
DEFAULT_QUALITY = 92
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
    messages = {413: f"the upload is larger than {current_app.config['MAX_CONTENT_LENGTH'] // 2**20} MB"}
    response = jsonify(error=messages.get(error.code, error.description))
    response.status_code = error.code or 500
    return response


# --- reading a request -------------------------------------------------------------------------

def parse_bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    try:
        return TRUE_WORDS[value.strip().lower()]
    except KeyError:
        raise BadRequest(f"{name} must be \"true\" or \"false\", not {value!r}") from None


def job_from_request() -> Job:
    """Validate an upload and its options, store the input, and describe the job (not yet run)."""
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest("no file: send the image as the multipart field 'file'")
    if not upload.filename:
        raise BadRequest("the uploaded file has no name; choose a file to upload")
    scale = check_scale(request.form.get("scale"))
    anime = parse_bool(request.form.get("anime"), "anime")
    model = request.form.get("model") or None
    model = None if model == "auto" else model
    if model is not None and model not in remaster().upscaler.store.entries():
        # Names only: a stranger must not make the server read files by path.
        raise ModelNotFoundError(f"no model named {model!r}; see /api/models")
    output_format = (request.form.get("format") or "png").lower().replace("jpeg", "jpg")
    if output_format not in OUTPUT_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    try:
        quality = int(request.form.get("quality") or DEFAULT_QUALITY)
    except ValueError:
        raise BadRequest("quality must be a whole number from 1 to 100") from None
    if not 1 <= quality <= 100:
        raise BadRequest("quality must be a whole number from 1 to 100")

    data = upload.read()
    image = decode(data, max_pixels=int(current_app.config["MAX_INPUT_PIXELS"]))
    service = remaster()
    plan = service.upscaler.plan(scale, anime, model)
    service.upscaler.check_output_size(image.width, image.height, scale)
    job_id = new_id()
    input_file = service.files.write(job_id, "in", image.source_format, data)
    return Job(
        id=job_id, scale=scale, anime=anime, model=model or plan.model, output_format=output_format,
        quality=quality, original_name=secure_filename(upload.filename) or "image", input_file=input_file,
        input_width=image.width, input_height=image.height,
        output_width=image.width * scale, output_height=image.height * scale,
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
    return f"{stem}_x{job.scale}.{job.output_format}"


def result_view(job: Job) -> dict:
    """The seed's synchronous contract, plus how the result was made."""
    provenance = job.provenance or {}
    return {
        "job_id": job.id,
        "original_path": url_for("api.uploads", name=job.input_file),
        "output_path": url_for("api.uploads", name=job.output_file),
        "download_path": url_for("api.uploads", name=job.output_file, download=1),
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
    view = {
        "id": job.id,
        "status": job.status,
        "scale": job.scale,
        "anime": job.anime,
        "model": job.model,
        "original_name": job.original_name,
        "progress": {"done": job.tiles_done, "total": job.tiles_total},
        "eta_seconds": job.eta_seconds,
        "error": job.error,
        "status_url": url_for("api.job_status", job_id=job.id),
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
    _job_or_404(job_id)
    return jsonify(status_view(remaster().runner.cancel(job_id)))


@bp.get("/api/jobs/<job_id>/result")
def job_result(job_id: str):
    job = _job_or_404(job_id)
    if job.status != "done":
        response = jsonify(error=f"the job is {job.status}", status=job.status)
        response.status_code = 409
        return response
    return _send(job.output_file, job, download=True)


@bp.get("/api/jobs.zip")
def jobs_zip():
    """All finished outputs of the given jobs (``?ids=a,b,c``) in one ZIP."""
    ids = [i for i in request.args.get("ids", "").split(",") if i][:100]
    jobs = [job for job in (remaster().runner.get(i) for i in ids) if job is not None and job.status == "done"]
    if not jobs:
        raise NotFound("none of these jobs has a finished result")
    spool = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)
    used: set[str] = set()
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
        for job in jobs:
            name = download_name(job, "out")
            while name in used:
                name = f"{PurePath(name).stem}-{job.id[:6]}{PurePath(name).suffix}"
            used.add(name)
            archive.write(remaster().files.resolve(job.output_file), name)
    spool.seek(0)
    return send_file(spool, mimetype="application/zip", as_attachment=True, download_name="remaster.zip")


@bp.get("/uploads/<name>")
def uploads(name: str):
    """Serve only files this app stored, under the name the user would expect."""
    match = FILE_NAME.match(name)
    job = remaster().runner.get(match["id"]) if match else None
    if job is None or name not in (job.input_file, job.output_file):
        raise NotFound("no such file (files expire after an hour)")
    return _send(name, job, download=request.args.get("download") == "1")


def _send(name: str, job: Job, download: bool):
    role = "in" if name == job.input_file else "out"
    response = send_from_directory(
        remaster().files.root, name, mimetype=MIME[PurePath(name).suffix.lstrip(".")],
        as_attachment=download, download_name=download_name(job, role), max_age=600,
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
    scale = check_scale(request.args.get("scale"))
    anime = parse_bool(request.args.get("anime"), "anime")
    model = request.args.get("model") or None
    service = remaster()
    if model not in (None, "auto") and model not in service.upscaler.store.entries():
        raise ModelNotFoundError(f"no model named {model!r}; see /api/models")
    plan = service.upscaler.plan(scale, anime, None if model == "auto" else model)
    errors = []
    if width * height > current_app.config["MAX_INPUT_PIXELS"]:
        errors.append(f"the image is larger than {current_app.config['MAX_INPUT_PIXELS'] / 1e6:.1f} MP")
    try:
        service.upscaler.check_output_size(width, height, scale)
    except RemasterError as exc:
        errors.append(str(exc))
    return jsonify(
        output_width=width * scale, output_height=height * scale, model=plan.model, resample=plan.resample,
        seconds=round(service.runner.estimate_seconds(plan.model, width, height), 1), errors=errors,
    )


@bp.get("/healthz")
def health():
    return jsonify(status="ok", **remaster().runner.stats())
