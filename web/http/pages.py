"""The server-rendered page and its favicon."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, url_for

from esrgan.io.imageio import OUTPUT_FORMATS
from esrgan.listing import option_rows
from esrgan.models.registry import SCALES
from web.http.limits import image_limits
from web.http.video_forms import page_values
from web.service import services

bp = Blueprint("pages", __name__)

# Contract C3; the page reads the live list from /api/models and keeps these as the first paint.
NOISE_LEVELS = ("none", "low", "medium", "high")


@bp.get("/")
def index():
    service = services()
    entries = service.upscaler.store.entries()
    limits = image_limits(current_app.config)
    return render_template(
        "index.html",
        scales=SCALES,
        formats=OUTPUT_FORMATS,
        noise_levels=NOISE_LEVELS,
        models=list(entries.values()),
        # The switches the server offers (tta, faces), as /api/models "options" says them; one it
        # cannot run here is shown off, with what to add.
        extra_options=option_rows(service.upscaler),
        max_megabytes=current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024),
        max_input_pixels=current_app.config["MAX_INPUT_PIXELS"],
        max_output_pixels=current_app.config["MAX_OUTPUT_PIXELS"],
        # What the page checks before sending (`web.http.limits`); the same as /api/models "limits".
        max_upload_bytes=limits["max_upload_bytes"],
        input_types=limits["input_types"],
        limits=limits,
        device=str(service.upscaler.device),
        video_limits=page_values(current_app.config),
    )


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for this path whatever the page links; answer with the page's icon."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)
