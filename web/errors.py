"""How engine errors become HTTP answers: a status code and a JSON message."""

from __future__ import annotations

from esrgan.errors import (
    Cancelled,
    ImageTooLargeError,
    InvalidImageError,
    ModelNotFoundError,
    RemasterError,
    StorageFullError,
    UnsupportedFormatError,
    UnsupportedScaleError,
    WeightsError,
)


class BadRequest(RemasterError):
    """A form field is missing or has a value we do not take."""


class NotFound(RemasterError):
    """No such job or file (or it has expired)."""


class QueueFull(RemasterError):
    """Every worker is busy and the queue is at its limit: try again later."""


# Most specific first: the first class an error is an instance of decides its status.
STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (QueueFull, 503),
    (StorageFullError, 507),
    (NotFound, 404),
    (ImageTooLargeError, 413),
    (UnsupportedFormatError, 415),
    (InvalidImageError, 400),
    (UnsupportedScaleError, 400),
    (ModelNotFoundError, 400),
    (BadRequest, 400),
    (Cancelled, 409),
    (WeightsError, 503),
)


def http_status(error: Exception) -> int:
    """The HTTP status for an error (500 for the unexpected)."""
    return next((code for kind, code in STATUS_BY_ERROR if isinstance(error, kind)), 500)
