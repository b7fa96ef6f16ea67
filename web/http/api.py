"""HTTP API: the synchronous ``POST /upscale``, the job API, comparing models on a crop, the models
listing, estimates, health.

Every error is JSON ``{"error": "..."}`` with a 4xx status (503 + Retry-After when the queue is
full; `web.errors`), and an error leaves no file behind. Files are served by `web.http.downloads`.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for

from esrgan.listing import models_listing
from esrgan.models.registry import output_size
from web import figures
from web.errors import BadRequest, NotFound, QueueFull
from web.http.compare_forms import compare_job_from_request, proposal_from_request
from web.http.forms import ESTIMATE_SIZE_FIELDS, job_from_request, limit_problems, read_options, work_pixels
from web.http.limits import image_limits
from web.http.video_forms import allow_video_bodies, page_values, refuse_video_or_animation, video_job_from_request
from web.http.views import find_job, finished_job_response, status_view
from web.jobs.estimate import job_priors, option_warnings, plan_view, route_choices
from web.jobs.record import FINISHED, Job
from web.service import services

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
    """Synchronous: answers when the result is ready (images only: a video is refused, pointing to /api/jobs)."""
    refuse_video_or_animation()
    job = submit(job_from_request())
    job = services().runner.wait(job.id, timeout=float(current_app.config["SYNC_TIMEOUT_SECONDS"]))
    if job.status not in FINISHED:
        response = jsonify(error="still working; poll the job", status_url=url_for("api.job_status", job_id=job.id))
        response.status_code = 202
        return response
    return finished_job_response(job)


def job_accepted(job: Job):
    """202 with the job's view and its address: the answer about a job that is still working."""
    response = jsonify(status_view(job))
    response.status_code = 202
    response.headers["Location"] = url_for("api.job_status", job_id=job.id)
    return response


@bp.post("/api/compare")
def compare():
    """Models tried on a crop of the image (an upload's fields, ``crop=X,Y,W,H``, optional
    ``models``), as a job of its own queued like any other: 200 with the candidates when it ends
    within SYNC_TIMEOUT_SECONDS, else 202 with the job, whose ``result`` holds them once done."""
    job = submit(compare_job_from_request())
    job = services().runner.wait(job.id, timeout=float(current_app.config["SYNC_TIMEOUT_SECONDS"]))
    return finished_job_response(job) if job.status in FINISHED else job_accepted(job)


@bp.post("/api/compare/proposal")
def compare_proposal():
    """Where a comparison of the uploaded image would start: the most detailed region and the
    models it would try (nothing is stored)."""
    return jsonify(proposal_from_request())


@bp.post("/api/jobs")
def create_job():
    allow_video_bodies()  # a video's own size limit; an image is held to its own once its kind is known
    return job_accepted(submit(video_job_from_request() or job_from_request()))


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
    listing["limits"] = image_limits(current_app.config)
    listing["choices"] = route_choices(service.upscaler)
    listing["video_limits"] = page_values(current_app.config)  # what a video or an animation may be
    return jsonify(listing)


@bp.get("/api/estimate")
def estimate():
    """What sending an image of ``width`` x ``height`` with these options (an upload's, the result's
    size as ``target_width`` or ``target_height``) would give, before sending: the output size, the
    plan in words, the whole job's seconds and its parts, what the limits would refuse
    (``errors``) and what a model chosen by hand ignores (``warnings``). Options no route offers
    are a 400 with the reason and the fix."""
    try:
        width, height = int(request.args["width"]), int(request.args["height"])
    except (KeyError, ValueError):
        raise BadRequest("width and height must be whole numbers") from None
    if width < 1 or height < 1:
        raise BadRequest("width and height must be positive")
    options = read_options(request.args, ESTIMATE_SIZE_FIELDS).for_image(width, height)
    service = services()
    plan = service.upscaler.plan(options.scale, options.anime, options.model, noise=options.noise)
    entry = service.upscaler.store.entries().get(plan.model)
    out_width, out_height = output_size(width, height, options.scale)
    errors = [str(problem) for problem in limit_problems(width, height, options, plan.model)]
    within = width * height <= current_app.config["MAX_INPUT_PIXELS"]
    # The runner's rate is per pixel the model really processes (a thin strip costs its padding too).
    priors = job_priors(plan.model, width, height, options.scale, options.output_format, plan.resample is not None,
                        float(current_app.config["PREVIEW_MIN_SECONDS"]), set(service.upscaler.store.entries()),
                        service.runner.estimate_seconds, options.tta)
    parts = {"preview": priors.preview, "upscale": priors.upscale or 0.0, "finish": priors.finish}
    return jsonify(
        output_width=out_width, output_height=out_height, scale=options.scale, model=plan.model,
        resample=plan.resample, plan=plan_view(plan, entry),
        seconds=figures.seconds(sum(parts.values())),
        seconds_parts={k: figures.seconds(v) for k, v in parts.items()},
        work_pixels=work_pixels(width, height, plan.model) if within else width * height, errors=errors,
        warnings=option_warnings(entry, options.model is not None, options.anime, options.noise),
    )


@bp.get("/healthz")
def health():
    return jsonify(status="ok", **services().runner.stats())
