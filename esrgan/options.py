"""What one upscale asks for (`UpscaleOptions`): the arguments of `esrgan.pipeline.Upscaler.upscale`
besides the image, the callbacks and the checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esrgan.io.imageio import DecodedImage
    from esrgan.models.registry import Plan


@dataclass(frozen=True)
class UpscaleOptions:
    """What one upscale asks for.

    Attributes:
        scale: Any output scale from 1 to 8 (2, 4 and 8 are the page's quick choices).
        anime: Prefer the anime model.
        model: A registry name, custom name or checkpoint path to use instead of the route.
        noise: Noise reduction, ``"none"``/``"low"``/``"medium"``/``"high"`` (the registry's route).
        tta: Run every network of the plan on the 8 flips and transposes of its input and average
            the outputs (`esrgan.tiling.tta`): about 8x the time, progress steps included.
        faces: Then restore the faces found in the input with the face checkpoint in the weights
            folder and paste them over the result (Real-ESRGAN's ``--face_enhance``).
        float_result: Keep the result float32 even where it goes straight to 8 bits (see `bytes_result`).
    """

    scale: float
    anime: bool = False
    model: str | None = None
    noise: str | None = "none"
    tta: bool = False
    faces: bool = False
    float_result: bool = False

    def bytes_result(self, image: DecodedImage, chosen: Plan) -> bool:
        """Whether the result comes back as uint8 made on the device (`esrgan.tiling.canvas`; the same
        bytes an encoder makes of the float result): an 8-bit RGB source, no resample, no faces, and
        no float result asked."""
        return not (self.float_result or self.faces or image.bit_depth != 8 or image.has_alpha or image.is_gray
                    or chosen.resample is not None)
