"""What an upscaling gives back: the image, how it was made (`Provenance`), and the Lanczos
resample that takes a model's native scale to the scale asked."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from esrgan.io.imageio import DecodedImage


@dataclass(frozen=True)
class Provenance:
    """How a result was made, for the UI, the API and the CLI."""

    model: str
    model_title: str
    weights: str
    native_scale: int
    scale: int
    resample: str | None
    device: str
    precision: str
    backend: str
    tiles: int
    seconds: float
    tile: int = 0  # the tile side used (0: the whole image), after any out-of-memory halving
    before: tuple[str, ...] = ()  # models run before ``model``, in order (a chain: `registry.Plan.before`)
    tta: bool = False  # every network ran on the 8 flips and transposes, averaged (`esrgan.tiling.tta`)
    faces: bool = False  # faces found in the input were restored and pasted over (`esrgan.faces`)
    approximate: str = ""  # why the result is not exactly the network's whole-image output (`esrgan.models.whole`)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class UpscaleResult:
    image: DecodedImage
    provenance: Provenance


def resample(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos-resample (H, W, C) float32 pixels to ``size`` = (width, height), channel by channel.

    Pillow's Lanczos on float ("F") images keeps full precision and antialiases when shrinking.
    """
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., c]), "F").resize(size, Image.LANCZOS))
        for c in range(pixels.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0, 1).astype(np.float32)
