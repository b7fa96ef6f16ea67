"""Typed errors of the video engine, each a kind of the engine's own errors (so the web's mapping of
`esrgan.errors` classes to HTTP statuses already covers them) with a message a user can act on."""

from __future__ import annotations

from esrgan.errors import (
    ImageTooLargeError,
    InvalidImageError,
    InvalidOptionError,
    RemasterError,
    UnsupportedFormatError,
)


class VideoError(RemasterError):
    """Base class of every error the video engine raises on purpose."""


class NotAVideoError(VideoError, UnsupportedFormatError):
    """The content is no video or animated image we can read (text, a still image, garbage)."""


class NoVideoStreamError(VideoError, UnsupportedFormatError):
    """The file is a media container without a picture (audio only, subtitles only)."""


class UnsupportedCodecError(VideoError, UnsupportedFormatError):
    """The picture is in a codec we do not decode (the message lists the ones we do)."""


class VideoTooLongError(VideoError, ImageTooLargeError):
    """The clip lasts longer than the limit allows."""


class VideoTooLargeError(VideoError, ImageTooLargeError):
    """More frames, or more pixels per frame (input or output), than the limits allow."""


class DamagedVideoError(VideoError, InvalidImageError):
    """The file turned out damaged or truncated while decoding.

    Attributes:
        frame: 0-based index of the first frame that could not be decoded.
    """

    def __init__(self, message: str, frame: int) -> None:
        super().__init__(message)
        self.frame = frame


class IncompatibleStreamError(VideoError, InvalidOptionError):
    """A sound or subtitle stream cannot go into the chosen container, and may not be transcoded
    (or cannot be: bitmap subtitles); the message names the container that would hold it."""


class VideoOptionError(VideoError, InvalidOptionError):
    """An output option is unknown or does not fit the others (H.264 in WebM, CRF out of range)."""


class SegmentError(VideoError):
    """Segments do not fit together: encoded with other settings, missing, or out of order."""
