"""waifu2x (nagadomi): the upconv_7 and CUnet networks, with what the engine needs to know about them.

Three networks, named and keyed as nunif (nagadomi's PyTorch waifu2x) names them:

* `UpConv7` (2x): six valid 3x3 convolutions and a 4x4 transposed convolution, ``net.0`` ... ``net.12``.
  The shipped "anime style art" and "photo" models (no noise, noise 0-3) are all of this shape.
* `CUNet` (1x, noise 0-3 only) and `UpCUNet` (2x, no noise and noise 0-3): two U-Nets of valid
  convolutions with squeeze-and-excitation blocks, ``unet1.*`` and ``unet2.*``: the very modules
  Real-CUGAN grew from, so they are spandrel's Real-CUGAN modules (same classes, same key names).

Pre- and post-processing are waifu2x-ncnn-vulkan's (its ``process``/``process_cpu`` for one tile,
the whole image): the input is padded by replicating its border, `prepadding` pixels on every side
plus up to ``alignment - 1`` more on the bottom and right so the padded-away sides are multiples of
``alignment`` (2 at 2x, 4 at 1x, whatever the model); the network shrinks its input by its valid
convolutions; the output is cropped from the top left to the input's size times the scale. Values
are RGB in [0, 1] in and out (the runtime divides 8-bit input by 255 and multiplies by 255 again,
nothing else); the output is not clamped here, as the runtime clamps only when it writes 8 bits.

| network  | scale | noise levels       | prepadding | alignment | tile-offset multiple | border    |
| -------- | ----- | ------------------ | ---------- | --------- | -------------------- | --------- |
| UpConv7  | 2     | none, 0, 1, 2, 3   | 7          | 2         | 1                    | replicate |
| UpCUNet  | 2     | none, 0, 1, 2, 3   | 18         | 2         | 2                    | replicate |
| CUNet    | 1     | 0, 1, 2, 3         | 28         | 4         | 4                    | replicate |

The tile-offset multiple (`size_multiple`) is the grid of the U-Nets' stride-2 downsamplings: a tile
that starts off that grid sees differently pooled pixels. UpConv7 has no such grid.

Tiling: the CUnet's squeeze-and-excitation blocks (`SE_BLOCKS`) scale features by their mean over
the whole padded input, so a tile computes other means than the whole image does (waifu2x-ncnn-vulkan
itself runs the whole image as one tile up to 400 px on a CPU and does no synchronisation). A tiler
that wants whole-image results must share those means across tiles, as for Real-CUGAN.

Shapes: (N, C, H, W) float RGB in [0, 1] -> (N, C, H*scale, W*scale), any H and W >= 1.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from spandrel.architectures.RealCUGAN.__arch.upcunet_v3 import SEBlock, UNet1, UNet2
from torch import nn
from torch.nn import functional as F

from esrgan.detect import ModelDescriptor

FAMILY = "waifu2x"
UPCONV7 = "waifu2x-upconv7"  # architecture names, for the `esrgan.detect.ARCHITECTURES` table
CUNET = "waifu2x-cunet"
LEAKY_SLOPE = 0.1
BORDER: Literal["replicate"] = "replicate"
# The U-Net pair crops its first U-Net's output by this much on every side before adding the second's.
UNET_SKIP_CROP = 20
# Squeeze-and-excitation blocks of CUNet and UpCUNet, in execution order (same places as Real-CUGAN 2x).
SE_BLOCKS = ("unet1.conv2.seblock", "unet2.conv2.seblock", "unet2.conv3.seblock", "unet2.conv4.seblock")
# The 2x U-Net pair has Real-CUGAN 2x's keys and shapes; this buffer says the weights are waifu2x's
# (replicated border, not reflected), as Real-CUGAN's ``pro`` buffer marks its "pro" models.
MARKER = "waifu2x"


class _Waifu2xNet(nn.Module):
    """waifu2x-ncnn-vulkan's processing of one tile around a network of valid convolutions."""

    scale: ClassVar[int]
    prepadding: ClassVar[int]  # replicated pixels on every side, consumed by the valid convolutions
    alignment: ClassVar[int]  # the padded-away sides are rounded up to this multiple (bottom, right)
    size_multiple: ClassVar[int]  # tiles must start on this grid to see the whole image's pixels

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """The ncnn graph itself: no padding, the output shrunk by the valid convolutions."""
        raise NotImplementedError

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate the border: `prepadding` on every side, and the bottom/right up to `alignment`."""
        height, width = x.shape[-2:]
        p = self.prepadding
        bottom, right = p + (-height % self.alignment), p + (-width % self.alignment)
        return F.pad(x, (p, right, p, bottom), mode=BORDER)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float RGB in [0, 1] -> (N, C, H*scale, W*scale), unclamped: the whole image
        as waifu2x-ncnn-vulkan processes one tile (pad, run the graph, crop from the top left)."""
        height, width = x.shape[-2:]
        out = self.forward_valid(self.pad(x))
        return out[..., : height * self.scale, : width * self.scale]


class UpConv7(_Waifu2xNet):
    """waifu2x upconv_7, native 2x. Keyword arguments: ``in_channels``, ``out_channels``."""

    scale = 2
    prepadding = 7
    alignment = 2
    size_multiple = 1

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3) -> None:
        super().__init__()
        widths = (in_channels, 16, 32, 64, 128, 128, 256)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths, widths[1:], strict=False):
            layers += [nn.Conv2d(width_in, width_out, 3, 1, 0), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
        layers.append(nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 3))
        self.net = nn.Sequential(*layers)

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _UNetPair(_Waifu2xNet):
    """Two U-Nets; the first one's output, cropped, is added to the second's (CUnet's residual)."""

    def __init__(self, *, in_channels: int, out_channels: int, deconv: bool) -> None:
        super().__init__()
        self.unet1 = UNet1(in_channels, out_channels, deconv=deconv)
        self.unet2 = UNet2(out_channels, out_channels, deconv=False)

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        first = self.unet1(x)
        second = self.unet2(first)
        c = UNET_SKIP_CROP
        return first[..., c : c + second.shape[-2], c : c + second.shape[-1]] + second


class CUNet(_UNetPair):
    """waifu2x CUnet at 1x (noise reduction only). Keyword arguments: ``in_channels``, ``out_channels``."""

    scale = 1
    prepadding = 28
    alignment = 4
    size_multiple = 4

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, deconv=False)


class UpCUNet(_UNetPair):
    """waifu2x CUnet at 2x. Keyword arguments: ``in_channels``, ``out_channels``."""

    scale = 2
    prepadding = 18
    alignment = 2
    size_multiple = 2

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, deconv=True)
        self.register_buffer(MARKER, torch.ones(1))


CUNETS: dict[int, type[_UNetPair]] = {1: CUNet, 2: UpCUNet}


def Waifu2xCUNet(*, scale: int, in_channels: int = 3, out_channels: int = 3) -> nn.Module:  # noqa: N802
    """The CUnet of this native scale (1 or 2): the constructor behind the ``waifu2x-cunet`` name."""
    if scale not in CUNETS:
        raise ValueError(f"waifu2x CUnet exists at scales 1 and 2, not {scale}")
    return CUNETS[scale](in_channels=in_channels, out_channels=out_channels)


# name -> constructor taking keyword arguments only (entries for `esrgan.detect.ARCHITECTURES`).
ARCHITECTURES = {UPCONV7: UpConv7, CUNET: Waifu2xCUNet}


def se_blocks(network: nn.Module) -> list[tuple[str, SEBlock]]:
    """The squeeze-and-excitation blocks of a CUnet, by name, in execution order (none in UpConv7)."""
    return [(name, module) for name, module in network.named_modules() if isinstance(module, SEBlock)]


def network_facts(arch: str, scale: int) -> type[_Waifu2xNet]:
    """The class holding `scale`, `prepadding`, `alignment` and `size_multiple` of a waifu2x network."""
    if arch == UPCONV7 and scale == 2:
        return UpConv7
    if arch == CUNET and scale in CUNETS:
        return CUNETS[scale]
    raise ValueError(f"no waifu2x network {arch!r} at scale {scale}")


def _upconv7_indices(state: dict[str, torch.Tensor]) -> list[int]:
    parts = [k.split(".") for k in state]
    return sorted(int(p[1]) for p in parts if len(p) == 3 and p[0] == "net" and p[1].isdigit() and p[2] == "weight")


def detect(state: dict[str, torch.Tensor]) -> ModelDescriptor | None:
    """Recognise a waifu2x state dict by its keys and shapes; None when it is not one.

    UpConv7: exactly ``net.{0,2,...,12}``, the last a 4x4 transposed convolution. CUNet (1x): the
    U-Net pair whose first U-Net ends in a 3x3 convolution (Real-CUGAN's end in transposed ones).
    UpCUNet (2x): the U-Net pair with the `MARKER` buffer; without it the keys and shapes are
    Real-CUGAN 2x's, and that is what such a state dict is taken for (its border is reflected).
    """
    if "net.0.weight" in state:
        if _upconv7_indices(state) != list(range(0, 13, 2)) or state["net.12.weight"].shape[-2:] != (4, 4):
            return None
        in_ch, out_ch = state["net.0.weight"].shape[1], state["net.12.weight"].shape[1]
        args = (("in_channels", in_ch), ("out_channels", out_ch))
        return ModelDescriptor(UPCONV7, 2, in_ch, out_ch, args, UpConv7.size_multiple)
    bottom, first = state.get("unet1.conv_bottom.weight"), state.get("unet1.conv1.conv.0.weight")
    if bottom is None or first is None or "unet2.conv_bottom.weight" not in state or "conv_final.weight" in state:
        return None
    in_ch = first.shape[1]
    if bottom.shape[-2:] == (3, 3) and bottom.shape[1] == 64:
        scale, out_ch = 1, bottom.shape[0]
    elif MARKER in state and bottom.shape[-2:] == (4, 4):
        scale, out_ch = 2, bottom.shape[1]
    else:
        return None
    args = (("scale", scale), ("in_channels", in_ch), ("out_channels", out_ch))
    return ModelDescriptor(CUNET, scale, in_ch, out_ch, args, CUNETS[scale].size_multiple)


def freeze_rule(descriptor: ModelDescriptor) -> str:
    """What fine-tuning keeps fixed by default: the first U-Net of a CUnet (the second refines, as in
    Real-CUGAN), or the first five of upconv_7's seven convolutions (~70%, as for the others)."""
    if descriptor.arch == CUNET:
        return "unet1"
    return ",".join(f"net.{i}" for i in range(0, 10, 2))
