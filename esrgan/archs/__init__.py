"""The network architectures we define, one module each, and the list of them.

Each module holds a network (``nn.Module``, official key names) and ends with its ``ARCHITECTURE``
(`esrgan.archs.base.Architecture`): detection, size multiple, ncnn mapping, freeze rule. Adding an
architecture is one module and one line in `ARCHITECTURES`. The U-Net discriminator is a part of
fine-tuning, not a generator, so it is not listed.
"""

from __future__ import annotations

from esrgan.archs import cugan, rrdbnet, srvgg, waifu2x
from esrgan.archs.base import Architecture, ModelDescriptor
from esrgan.archs.cugan import RealCUGAN
from esrgan.archs.discriminator import UNetDiscriminatorSN
from esrgan.archs.rrdbnet import RRDBNet
from esrgan.archs.srvgg import SRVGGNetCompact
from esrgan.errors import WeightsError

# In the order detection tries them: the first that recognises a state dict's keys describes it.
# SRVGGNetCompact comes last because its keys (body.0, body.1 ...) are the least specific; waifu2x's
# CUnet before Real-CUGAN, whose 2x keys its 2x CUnet shares (told apart by a marker buffer).
ARCHITECTURES: tuple[Architecture, ...] = (
    rrdbnet.ARCHITECTURE,
    *waifu2x.ARCHITECTURES,
    cugan.ARCHITECTURE,
    srvgg.ARCHITECTURE,
)


def __getattr__(name: str) -> object:  # Real-CUGAN's classes are made on first use (no spandrel import before)
    if name in ("UpCunet2x", "UpCunet3x", "UpCunet4x"):
        return getattr(cugan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def architecture(name: str) -> Architecture:
    """The listed architecture of this name. Raises WeightsError for a name not in `ARCHITECTURES`."""
    for candidate in ARCHITECTURES:
        if candidate.name == name:
            return candidate
    raise WeightsError(f"no architecture named {name!r}; known: {', '.join(a.name for a in ARCHITECTURES)}")


__all__ = ["ARCHITECTURES", "Architecture", "ModelDescriptor", "RRDBNet", "RealCUGAN", "SRVGGNetCompact",
           "UNetDiscriminatorSN", "UpCunet2x", "UpCunet3x", "UpCunet4x", "architecture"]
