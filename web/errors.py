"""Errors at the edge: what kind of failure an error is, and how each kind answers over HTTP.

A job records the KIND of its failure (plain data, the same in every process); only here does a
kind become a status code, and every error the API answers is JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import errno
import logging
from typing import Literal

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from esrgan.errors import (
    Cancelled,
    ImageTooLargeError,
    InvalidImageError,
    InvalidOptionError,
    ModelNotFoundError,
    RemasterError,
    StorageFullError,
    UnsupportedFormatError,
    UnsupportedScaleError,
    WeightsError,
)

log = logging.getLogger(__name__)

ErrorKind = Literal["bad_input", "too_large", "unsupported_format", "not_found", "conflict", "expired",
                    "busy", "unavailable", "disk_full", "internal"]
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class BadRequest(RemasterError):
    """A form field is missing or has a value we do not take."""


class NotFound(RemasterError):
    """No such job or file (or it has expired)."""


class QueueFull(RemasterError):
    """Every worker is busy and the queue is at its limit: try again later."""


HTTP_STATUS: dict[str, int] = {
    "bad_input": 400,
    "too_large": 413,
    "unsupported_format": 415,
    "not_found": 404,
    "conflict": 409,  # the job is not in the state asked for (e.g. cancelled, so no result)
    "expired": 410,  # it was there, and its time is up (or its input is gone)
    "busy": 503,
    "unavailable": 503,  # this install cannot do it now (e.g. weights missing)
    "disk_full": 507,
    "internal": 500,
}

# Most specific first: the first class an error is an instance of decides its kind.
KIND_BY_ERROR: tuple[tuple[type[Exception], ErrorKind], ...] = (
    (QueueFull, "busy"),
    (StorageFullError, "disk_full"),
    (NotFound, "not_found"),
    (ImageTooLargeError, "too_large"),
    (UnsupportedFormatError, "unsupported_format"),
    (InvalidImageError, "bad_input"),
    (UnsupportedScaleError, "bad_input"),
    (InvalidOptionError, "bad_input"),
    (ModelNotFoundError, "bad_input"),
    (BadRequest, "bad_input"),
    (Cancelled, "conflict"),
    (WeightsError, "unavailable"),
)


def error_kind(error: Exception) -> ErrorKind:
    """The kind of an error (``"internal"`` for the unexpected)."""
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        return "disk_full"
    return next((kind for cls, kind in KIND_BY_ERROR if isinstance(error, cls)), "internal")


def http_status(kind: str | None) -> int:
    """The HTTP status a kind of failure answers with (500 for an unknown kind)."""
    return HTTP_STATUS.get(kind or "internal", 500)


def error_response(kind: str | None, message: str, **extra: object):
    """The JSON answer ``{"error": message, ...}`` with the kind's status."""
    response = jsonify(error=message, **extra)
    response.status_code = http_status(kind)
    if kind == "busy":
        response.headers["Retry-After"] = str(current_app.config["RETRY_AFTER_SECONDS"])
    return response


def register_error_handlers(app: Flask) -> None:
    """Answer every error as JSON: the engine's and ours by kind, werkzeug's with their own status."""

    @app.errorhandler(RemasterError)
    def engine_error(error: RemasterError):
        return error_response(error_kind(error), str(error))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # The limit of this request: an image's, or on /api/jobs a video's (`web.http.video_forms`).
        messages = {413: f"the upload is larger than {(request.max_content_length or 0) / 2**20:g} MB"}
        response = jsonify(error=messages.get(error.code, error.description))
        response.status_code = error.code or 500
        # Keep what werkzeug's own answer says beyond the text: Allow on a 405 (RFC 9110 requires
        # it), WWW-Authenticate, Retry-After...
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OSError)
    def os_error(error: OSError):
        """A full disk (writing an upload, a spooled form, a result) is 507; anything else a 500."""
        if error_kind(error) == "disk_full":
            log.warning("disk full: %s", error)
            return error_response("disk_full", "the server's disk is full; nothing was kept. Try again later.")
        log.exception("unexpected error")
        return error_response("internal", "internal error")
