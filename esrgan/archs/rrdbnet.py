"""RRDBNet, the generator of ESRGAN and Real-ESRGAN, with the official BasicSR key names.

Keeping the key names (``conv_first``, ``body.N.rdb1.conv1``, ``conv_body``, ``conv_up1`` ...) means every
published Real-ESRGAN checkpoint loads with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

RESIDUAL_SCALE = 0.2
LEAKY_SLOPE = 0.2


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and an outer scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """The Real-ESRGAN generator.

    Scales 1 and 2 fold the input into channels with ``pixel_unshuffle`` first (as RealESRGAN_x2plus
    does), so the body always works at a quarter of the output resolution; scale 8 adds a third
    nearest-neighbour upsampling step (``conv_up3``, as in ai-forever's RealESRGAN_x8).

    Args:
        num_in_ch: Image channels in.
        num_out_ch: Image channels out.
        scale: Upscaling factor: 1, 2, 4 or 8.
        num_feat: Trunk channels.
        num_block: Number of RRDB blocks (23 for x4plus, 6 for the anime model).
        num_grow_ch: Growth channels of each dense block.

    Shapes:
        (N, num_in_ch, H, W) float RGB in [0, 1] -> (N, num_out_ch, H*scale, W*scale). For scale 2,
        H and W must be even; for scale 1, multiples of 4.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"RRDBNet supports scales 1, 2, 4 and 8, not {scale}")
        self.scale = scale
        unshuffle = {1: 4, 2: 2}.get(scale, 1)
        self.unshuffle = unshuffle
        self.conv_first = nn.Conv2d(num_in_ch * unshuffle * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if scale == 8:
            self.conv_up3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=LEAKY_SLOPE, inplace=True)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self.unshuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        ups = [self.conv_up1, self.conv_up2] + ([self.conv_up3] if self.scale == 8 else [])
        for conv in ups:
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))
