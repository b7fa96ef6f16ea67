"""Remaster's engine: Real-ESRGAN upscaling with real weights, tiled on CPU or CUDA."""

from esrgan.errors import (
    Cancelled,
    ImageTooLargeError,
    InvalidImageError,
    ModelNotFoundError,
    RemasterError,
    UnsupportedFormatError,
    UnsupportedScaleError,
    WeightsError,
)

__all__ = [
    "Cancelled",
    "ImageTooLargeError",
    "InvalidImageError",
    "ModelNotFoundError",
    "RemasterError",
    "UnsupportedFormatError",
    "UnsupportedScaleError",
    "WeightsError",
]
