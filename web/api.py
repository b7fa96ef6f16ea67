"""HTTP API: the synchronous ``POST /upscale``, the job API, the models listing, estimates, health.

Every error is JSON ``{"error": "..."}`` with a 4xx status (503 + Retry-After when the queue is
full; `web.errors`), and an error leaves no file behind. Files are served by `web.downloads`.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for

from esrgan.listing import models_listing
from esrgan.registry import output_size
from web import figures
from web.errors import BadRequest, NotFound, QueueFull
from web.forms import job_from_request, limit_problems, read_options, work_pixels
from web.job import FINISHED, Job
from web.service import services
from web.views import find_job, finished_job_response, status_view

bp = Blueprint("api", __name__)


def submit(job: Job) -> Job:
    """Queue the job; a refused one leaves no file."""
    try:
        return services().runner.submit(job)
    except QueueFull:
        services().files.delete_job(job.id)
        raise


@bp.post("/upscale")
def upscale():
    """Synchronous: answers when the result is ready."""
    job = submit(job_from_request())
    job = services().runner.wait(job.id, timeout=float(current_app.config["SYNC_TIMEOUT_SECONDS"]))
    if job.status not in FINISHED:
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


@bp.get("/api/jobs/<job_id>")
def job_status(job_id: str):
    return jsonify(status_view(find_job(job_id)))


@bp.delete("/api/jobs/<job_id>")
def cancel_job(job_id: str):
    """Cancel: a queued job ends at once, a running one within a network step (the answer then
    says stage "cancelling"); a finished job is answered as it is."""
    find_job(job_id)
    job = services().runner.cancel(job_id)
    if job is None:  # expired between the two looks
        raise NotFound(f"no job {job_id!r}")
    return jsonify(status_view(job))


@bp.get("/api/models")
def models():
    """Every model (contract C3): family, native scale, noise level, licence, source, measured rate."""
    service = services()
    listing = models_listing(service.upscaler)
    listing["unavailable"] = service.upscaler.store.unavailable()
    listing["limits"] = {"max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"],
                         "max_input_pixels": current_app.config["MAX_INPUT_PIXELS"],
                         "max_output_pixels": current_app.config["MAX_OUTPUT_PIXELS"]}
    return jsonify(listing)


@bp.get("/api/estimate")
def estimate():
    """Output size, estimated seconds and what the limits would refuse, for an image of ``width`` x
    ``height`` and the same options an upload takes."""
    try:
        width, height = int(request.args["width"]), int(request.args["height"])
    except (KeyError, ValueError):
        raise BadRequest("width and height must be whole numbers") from None
    if width < 1 or height < 1:
        raise BadRequest("width and height must be positive")
    options = read_options(request.args)
    service = services()
    plan = service.upscaler.plan(options.scale, options.anime, options.model, noise=options.noise)
    out_width, out_height = output_size(width, height, options.scale)
    errors = [str(problem) for problem in limit_problems(width, height, options, plan.model)]
    within = width * height <= current_app.config["MAX_INPUT_PIXELS"]
    return jsonify(
        output_width=out_width, output_height=out_height, model=plan.model, resample=plan.resample,
        # The runner's rate is per pixel the model really processes (a thin strip costs its padding too).
        seconds=figures.seconds(service.runner.estimate_seconds(plan.model, width, height)),
        work_pixels=work_pixels(width, height, plan.model) if within else width * height, errors=errors,
    )


@bp.get("/healthz")
def health():
    return jsonify(status="ok", **services().runner.stats())
