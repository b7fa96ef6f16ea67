"""The Flask application: `create_app(config)` builds it; nothing heavy happens at import time."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from web.errors import register_error_handlers
from web.http.video_forms import VIDEO_DEFAULTS
from web.service import AppServices

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = {
    "UPLOAD_FOLDER": str(ROOT / "uploads"),
    "WEIGHTS_FOLDER": None,
    "MAX_CONTENT_LENGTH": 25 * 1024 * 1024,  # bytes per request
    "MAX_INPUT_PIXELS": 2048 * 2048,
    "MAX_OUTPUT_PIXELS": 8192 * 8192,
    # Pixels the model may really process for one image (tile context and padding included): twice
    # the largest input, so every image within MAX_INPUT_PIXELS passes and a thin strip that costs
    # many times its pixels does not.
    "MAX_WORK_PIXELS": 2 * 2048 * 2048,
    "FILE_TTL_SECONDS": 3600,
    "WORKERS": 1,  # inferences at once; one already uses every CPU core
    "MAX_QUEUE": 8,  # jobs waiting; one more is answered 503 with Retry-After
    "RETRY_AFTER_SECONDS": 30,
    "SYNC_TIMEOUT_SECONDS": 900,
    "DEVICE": "auto",
    "PRECISION": "auto",  # fp32, bf16, fp16 (CUDA), or measured on first use
    "BACKEND": "auto",
    "TILE": None,  # None: chosen by device
    "SE_SYNC": "exact",  # Real-CUGAN's tiles: "exact" (equal to the whole image) or "tile" (faster, drifts)
    "TORCH_THREADS": None,
    "PREVIEW_MIN_SECONDS": 4,  # jobs expected to take longer get a quick preview from the fast model first
    "PRELOAD_MODELS": True,  # load the default models in the background at start
    "BROKER_URL": None,  # e.g. redis://host:6379/0: run jobs on Celery workers instead of in-process
    "ROUTE_BY_DEVICE": False,  # with a broker: heavy models to queue "gpu", the fast one to "cpu"
    "VISIBILITY_TIMEOUT": 3600,  # seconds before an unacknowledged job goes back to the queue
    "ROLE": "web",  # "web" (serves pages; runs jobs itself unless BROKER_URL) or "worker" (Celery)
    "WORKER_NAME": None,  # a Celery worker's name, as shown by /healthz
    "HOST": "127.0.0.1",
    "PORT": 5000,
    "WSGI_THREADS": 32,
    "WSGI_CONNECTION_LIMIT": 500,  # open connections; beyond it waitress stops accepting
    "WSGI_CHANNEL_TIMEOUT": 30,  # seconds an idle or half-sent connection is kept
    "WSGI_MAX_HEADER_BYTES": 32 * 1024,
}


def create_app(config: dict | None = None) -> Flask:
    """Build the app: defaults, then ``REMASTER_*`` environment variables, then ``config``."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.from_mapping(DEFAULTS)
    app.config.from_mapping(VIDEO_DEFAULTS)
    app.config.from_prefixed_env("REMASTER")
    if config:
        app.config.from_mapping(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    AppServices().init_app(app)
    register_error_handlers(app)

    from web.http import api, downloads, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(downloads.bp)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "object-src 'none'; frame-ancestors 'none'",
        )
        return response

    return app
