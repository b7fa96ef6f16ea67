"""The server-rendered page."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from esrgan.imageio import OUTPUT_FORMATS
from esrgan.registry import SCALES
from web.service import remaster

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    service = remaster()
    entries = service.upscaler.store.entries()
    return render_template(
        "index.html",
        scales=SCALES,
        formats=OUTPUT_FORMATS,
        models=list(entries.values()),
        max_megabytes=current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024),
        max_input_pixels=current_app.config["MAX_INPUT_PIXELS"],
        device=str(service.upscaler.device),
    )
