"""Typed errors a user can cause, each with a message the user can act on."""

from __future__ import annotations


class RemasterError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidImageError(RemasterError):
    """The input is not a readable image (empty, truncated, not an image, unsupported format)."""


class UnsupportedFormatError(InvalidImageError):
    """The content is not an image format we accept (text, HTML, SVG, GIF, animated images...)."""


class ImageTooLargeError(RemasterError):
    """The input, or the output it would give, has more pixels than the configured limit."""


class FormatSizeError(ImageTooLargeError):
    """The result would be larger than the chosen output format can hold (WebP, JPEG side limits)."""


class StorageFullError(RemasterError):
    """The disk (or the user's quota) is full: nothing was written, try again later."""


class UnsupportedScaleError(RemasterError):
    """The asked scale is not one the engine offers."""


class ModelNotFoundError(RemasterError):
    """No model of that name is registered, and no checkpoint exists at that path."""


class NoiseNotAvailableError(ModelNotFoundError):
    """No model offers the asked noise reduction for this content and scale (e.g. for photos)."""


class FacesUnavailableError(ModelNotFoundError):
    """Face restoration was asked for, but no face restoration checkpoint is in weights/ (or the
    face detector's wheel is missing); the message says how to add it."""


class WeightsError(RemasterError):
    """A weights file is missing, corrupt, or not of a recognised architecture."""


class InvalidOptionError(RemasterError):
    """A setting (precision, backend, device...) is not one the engine offers, or not on this device."""


class BackendUnavailableError(InvalidOptionError):
    """The model cannot run on the asked backend or device (a user checkpoint on ncnn/Vulkan, no
    ncnn wheel, no Vulkan device); the message names the model, the backend and what runs it."""


class ConfigError(RemasterError):
    """An option (of fine-tuning, of the degradation) is unknown, or its value cannot work."""


class TrainingDataError(RemasterError):
    """The training images cannot be used: none readable, none large enough, or an LR partner missing."""


class TrainingError(RemasterError):
    """A fine-tuning run cannot go on: it diverged, or its run folder cannot be resumed."""


class OutputPathError(RemasterError):
    """Where the result should go cannot take it (e.g. its folder does not exist)."""


class Cancelled(RemasterError):
    """The caller asked to stop; raised between steps of the forward pass."""
