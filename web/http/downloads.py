"""Serving a job's files: the input, the result, the preview, the browser-viewable original, and
many results in one ZIP. Only files this app stored are served, under the names a user expects."""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path, PurePath

from flask import Blueprint, current_app, request, send_file, send_from_directory

from esrgan.io.imageio import decode, encode
from web.errors import BadRequest, NotFound, error_response
from web.http.video_forms import VIDEO_MIME
from web.http.views import download_name, find_job
from web.jobs.compare import candidate_model
from web.jobs.record import Job
from web.jobs.storage import FILE_NAME
from web.service import services

bp = Blueprint("files", __name__)

MAX_ZIP_JOBS = 100  # distinct ids one jobs.zip request may name
ZIP_SPOOL_BYTES = 64 * 2**20  # a ZIP larger than this is spooled to a temporary file
MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "bmp": "image/bmp", "tiff": "image/tiff",
        **VIDEO_MIME}


def needs_rendering(path: Path) -> bool:
    """Browsers show no TIFF, and some no 16-bit PNG: those originals are shown as 8-bit PNG."""
    with path.open("rb") as handle:
        head = handle.read(25)
    return path.suffix == ".tiff" or (head.startswith(b"\x89PNG") and len(head) == 25 and head[24] == 16)


@bp.get("/api/jobs/<job_id>/before")
def job_before(job_id: str):
    """The original as a browser shows it: the upload itself, or (TIFF, 16-bit) a PNG made once."""
    job = find_job(job_id)
    files = services().files
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
    job = find_job(job_id)
    if job.status != "done":
        return error_response("conflict", f"the job is {job.status}", status=job.status)
    if not job.output_file or not services().files.exists(job.output_file):
        return error_response("expired", f"the result has expired (results are kept "
                                         f"{current_app.config['FILE_TTL_SECONDS']} s); upscale the image again")
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
    outputs = _finished_outputs(ids)
    if not outputs:
        raise NotFound(f"none of these jobs has a result any more (results expire after "
                       f"{current_app.config['FILE_TTL_SECONDS']} s)")
    spool = tempfile.SpooledTemporaryFile(max_size=ZIP_SPOOL_BYTES)
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


def _finished_outputs(ids: list[str]) -> list[tuple[Job, Path]]:
    """(job, result file) of each done job whose result is still there."""
    service = services()
    outputs = []
    for job in (service.runner.get(i) for i in ids):
        if job is None or job.status != "done" or not job.output_file:
            continue
        try:
            outputs.append((job, service.files.resolve(job.output_file)))
        except ValueError:
            continue
    return [(job, path) for job, path in outputs if path.is_file()]


@bp.get("/uploads/<name>")
def uploads(name: str):
    """Serve only files this app stored, under the name the user would expect."""
    match = FILE_NAME.match(name)
    job = services().runner.get(match["id"]) if match else None
    served = (job.input_file, job.output_file, job.preview_file, f"{job.id}_before.png") if job else ()
    if job is None or (name not in served and candidate_model(job, name) is None):
        raise NotFound("no such file (files expire after an hour)")
    return _send(name, job, download=request.args.get("download") == "1")


def _send(name: str, job: Job, download: bool):
    role = FILE_NAME.match(name)["role"]
    stem = PurePath(download_name(job, "in")).stem
    served_name = {"in": download_name(job, "in"), "out": download_name(job, "out"),
                   "preview": f"{stem}_preview{PurePath(name).suffix}", "before": f"{stem}.png"}.get(role)
    if served_name is None:  # a compare's candidate: the image's name and the model's
        served_name = f"{stem}_{candidate_model(job, name)}{PurePath(name).suffix}"
    response = send_from_directory(
        services().files.root, name, mimetype=MIME[PurePath(name).suffix.lstrip(".")],
        as_attachment=download, download_name=served_name, max_age=600,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
