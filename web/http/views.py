"""A job as the API shows it: its status (contract C2), its result (the seed's synchronous
contract), and the JSON answer of a finished job."""

from __future__ import annotations

from pathlib import PurePath

from flask import current_app, jsonify, url_for

from web.errors import NotFound, error_response
from web.http.video_forms import add_kind_view
from web.jobs.compare import COMPARE, candidates_of, crop_of, crop_view
from web.jobs.record import Job
from web.service import services

RESTART_NOTE = "The server restarted while this job was under way; it started again from the beginning."


def find_job(job_id: str) -> Job:
    """The job as it is now. Raises NotFound for an unknown or expired id."""
    job = services().runner.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} (jobs expire after {current_app.config['FILE_TTL_SECONDS']} s)")
    return job


def download_name(job: Job, role: str) -> str:
    """The name a user would expect for the job's input (``"in"``) or result (``"out"``)."""
    stem = PurePath(job.original_name).stem or "image"
    if role == "in":
        return f"{stem}.{PurePath(job.input_file).suffix.lstrip('.')}"
    # A scale asked as such reads as one ("_x2.5"); one made from an asked size, as the size.
    size = f"x{job.scale:g}" if round(job.scale, 2) == job.scale else f"{job.output_width}x{job.output_height}"
    return f"{stem}_{size}.{job.output_format}"


def file_url(name: str | None, **args) -> str | None:
    return url_for("files.uploads", name=name, **args) if name else None


def output_bytes(job: Job) -> int | None:
    """Bytes of the job's result file; None once it has expired."""
    if not job.output_file:
        return None
    try:
        return services().files.resolve(job.output_file).stat().st_size
    except (OSError, ValueError):
        return None


def result_view(job: Job) -> dict:
    """The seed's synchronous contract, plus how the result was made and the file a download saves
    (its name, format and bytes: what the page says on its Download link)."""
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
        "download_name": download_name(job, "out"),
        "output_format": job.output_format,
        "output_bytes": output_bytes(job),
        "model": provenance.get("model"),
        "native_scale": provenance.get("native_scale"),
        "resample": provenance.get("resample"),
        "provenance": provenance,
    }


def compare_view(job: Job) -> dict:
    """A compare job's result: the crop, the size of each candidate (``output_width`` and
    ``output_height``: the crop at the asked scale) and the candidates in the order they were tried,
    each with ``model``, ``title``, ``note``, ``image_url`` (its PNG), ``crop_seconds`` (the crop's run)
    and ``full_seconds`` (this machine's estimate for the whole image)."""
    return {
        "job_id": job.id,
        "crop": crop_view(crop_of(job)),
        "scale": job.scale,
        "original_path": file_url(job.input_file),
        "original_width": job.input_width,
        "original_height": job.input_height,
        "output_width": job.output_width,
        "output_height": job.output_height,
        "candidates": [{"model": c["model"], "title": c["title"], "note": c["note"], "image_url": file_url(c["file"]),
                        "crop_seconds": c["crop_seconds"], "full_seconds": c["full_seconds"]}
                       for c in candidates_of(job)],
    }


def done_view(job: Job) -> dict:
    """What a done job made: a compare's candidates, else the result (`result_view`)."""
    return compare_view(job) if job.kind == COMPARE else result_view(job)


def status_view(job: Job) -> dict:
    """A job as the page and API clients see it (contract C2; the README tells it)."""
    runner = services().runner
    calibration = runner.calibration_seconds() if job.stage in ("queued", "calibrating") else None
    view = {
        "id": job.id,
        "status": job.status,
        "stage": job.display_stage,
        "stage_text": job.stage_text(calibration),
        "scale": job.scale,
        "anime": job.anime,
        "noise": job.noise,
        "tta": job.tta,
        "faces": job.faces,
        "model": job.model,
        "original_name": job.original_name,
        "progress": {"done": job.steps_done, "total": job.steps_total, "fraction": round(job.fraction, 4)},
        "elapsed_seconds": job.elapsed_seconds(),
        "eta_seconds": runner.eta_seconds(job, calibration),
        "queue_position": runner.queue_position(job),
        "restarted": job.restarts > 0,
        "restart_note": RESTART_NOTE if job.restarts > 0 else None,
        "cancel_requested": job.cancel_requested,
        "preview_url": file_url(job.preview_file),
        "before_url": url_for("files.job_before", job_id=job.id),
        "error": job.error,
        "status_url": url_for("api.job_status", job_id=job.id),
        # A job's files expire the TTL after it ended (`web.jobs.storage`); never while it waits or runs.
        "expires_at": round(job.finished_at + float(current_app.config["FILE_TTL_SECONDS"]))
        if job.finished and job.finished_at else None,
    }
    if job.status == "done":
        view["result"] = done_view(job)
    add_kind_view(view, job)
    return view


def finished_job_response(job: Job):
    """The result of a done job, else its error with the status its kind answers with."""
    if job.status == "done":
        return jsonify(done_view(job))
    return error_response(job.error_kind, job.error or f"job {job.status}")
