"""Real-CUGAN (bilibili's UpCunet v3): 2x, 3x and 4x anime upscalers, with the official key names.

The networks are spandrel's (a faithful copy of upstream ``upcunet_v3.py``: ``unet1.conv1.conv.0``,
``unet2.conv3.seblock.conv1``, ``conv_final`` ...). What this module adds is what our tiled runner needs
to know about them:

* Their own input padding: the forward pass reflect-pads every input (18 px at 2x, 14 at 3x, 19 at 4x)
  and the U-Nets crop their "valid" convolutions back, so no outside ``pre_pad`` is wanted.
* The alignment of their downsampling grid: a tile must start on a multiple of `size_multiple` (2 at
  2x and 4x, 4 at 3x, as upstream pads the image to) or its pixels see a shifted grid.
* A minimum side: the reflect padding needs the input to be larger than the pad, so smaller inputs are
  padded (replicating the border) up to `MIN_SIDE` and the output is cropped back.
* Upstream's PyTorch "pro" checkpoints carry a ``pro`` buffer and map inputs to [0.15, 0.85]; the
  shipped ncnn "pro" graphs are run by their runtime without that mapping, so our converted ones are
  built with ``pro=False`` (see `esrgan.convert.cugan_state_dict`).

Shapes: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, H*scale, W*scale), any H and W >= 1.
"""

from __future__ import annotations

import torch
from spandrel.architectures.RealCUGAN import UpCunet2x as _UpCunet2x
from spandrel.architectures.RealCUGAN import UpCunet3x as _UpCunet3x
from spandrel.architectures.RealCUGAN import UpCunet4x as _UpCunet4x
from torch import nn
from torch.nn import functional as F

MIN_SIDE = 32  # below this the reflect padding (up to 20 px) and the U-Net crops run out of pixels


class _SmallInputs:
    """Mixin: pad inputs smaller than `MIN_SIDE` (replicating the border) and crop the output back."""

    scale: int
    size_multiple: int
    internal_pad: int  # reflect padding the forward pass adds on every side (extra work per tile)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        short_h, short_w = max(0, MIN_SIDE - height), max(0, MIN_SIDE - width)
        if short_h or short_w:
            x = F.pad(x, (0, short_w, 0, short_h), mode="replicate")
        out = super().forward(x)  # type: ignore[misc]
        return out[..., : height * self.scale, : width * self.scale]


class UpCunet2x(_SmallInputs, _UpCunet2x):
    """Native 2x. Keyword arguments: ``in_channels``, ``out_channels``, ``pro``."""

    scale = 2
    size_multiple = 2
    internal_pad = 18


class UpCunet3x(_SmallInputs, _UpCunet3x):
    """Native 3x. Keyword arguments: ``in_channels``, ``out_channels``, ``pro``."""

    scale = 3
    size_multiple = 4
    internal_pad = 14


class UpCunet4x(_SmallInputs, _UpCunet4x):
    """Native 4x. Keyword arguments: ``in_channels``, ``out_channels``, ``pro``."""

    scale = 4
    size_multiple = 2
    internal_pad = 19


NETWORKS: dict[int, type[nn.Module]] = {2: UpCunet2x, 3: UpCunet3x, 4: UpCunet4x}


def RealCUGAN(*, scale: int, pro: bool = False, in_channels: int = 3, out_channels: int = 3) -> nn.Module:  # noqa: N802
    """The Real-CUGAN network of this native scale (2, 3 or 4); "pro" models have a ``pro`` buffer."""
    if scale not in NETWORKS:
        raise ValueError(f"Real-CUGAN exists at scales 2, 3 and 4, not {scale}")
    return NETWORKS[scale](in_channels=in_channels, out_channels=out_channels, pro=bool(pro))
