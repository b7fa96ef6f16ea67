"""Pure network definitions (``nn.Module``) with the official Real-ESRGAN / BasicSR / Real-CUGAN key names.

Recognising a state dict and building a network by name live in `esrgan.detect`.
"""

from __future__ import annotations

from esrgan.archs.cugan import RealCUGAN, UpCunet2x, UpCunet3x, UpCunet4x
from esrgan.archs.discriminator import UNetDiscriminatorSN
from esrgan.archs.rrdbnet import RRDBNet
from esrgan.archs.srvgg import SRVGGNetCompact


def describe_state_dict(state):
    """Kept for older callers: `esrgan.detect.detect`."""
    from esrgan.detect import detect

    return detect(state)


def __getattr__(name: str):
    if name == "ArchDescriptor":  # older name of esrgan.detect.ModelDescriptor
        from esrgan.detect import ModelDescriptor

        return ModelDescriptor
    raise AttributeError(name)


__all__ = ["RRDBNet", "RealCUGAN", "SRVGGNetCompact", "UNetDiscriminatorSN", "UpCunet2x", "UpCunet3x",
           "UpCunet4x", "describe_state_dict"]
