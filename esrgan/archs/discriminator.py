"""UNetDiscriminatorSN: Real-ESRGAN's U-Net discriminator with spectral normalisation.

A U-Net gives a realness score per pixel rather than one per image, which lets the GAN loss judge
local texture; spectral normalisation keeps its training stable.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm


class UNetDiscriminatorSN(nn.Module):
    """Three strided downsampling convolutions, three upsampling ones with skips, a 1-channel head.

    Args:
        num_in_ch: Image channels.
        num_feat: Channels of the first level (doubled at each level down).
        skip_connection: Add each encoder level to the decoder level of the same size.

    Shapes:
        (N, num_in_ch, H, W) with H and W multiples of 8 -> (N, 1, H, W) logits.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, negative_slope=0.2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)
