"""SRVGGNetCompact, the small Real-ESRGAN model (realesr-animevideov3), with official key names."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SRVGGNetCompact(nn.Module):
    """A plain stack of 3x3 convolutions with PReLU, a pixel shuffle, and a nearest-upsampled skip.

    Keys: ``body.0`` is the first conv, ``body.(2i+1)`` the activation after conv ``body.2i``, and the
    last conv is ``body.(2*num_conv+2)``, as in BasicSR.

    Args:
        num_in_ch: Image channels in.
        num_out_ch: Image channels out.
        num_feat: Channels of every hidden layer.
        num_conv: Hidden convolutions between the first and the last.
        upscale: Upscaling factor.

    Shapes:
        (N, num_in_ch, H, W) float RGB in [0, 1] -> (N, num_out_ch, H*upscale, W*upscale).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
    ) -> None:
        super().__init__()
        self.scale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    size_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")
