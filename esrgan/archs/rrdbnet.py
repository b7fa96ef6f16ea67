"""RRDBNet, the generator of ESRGAN and Real-ESRGAN, with the official BasicSR key names.

Keeping the key names (``conv_first``, ``body.N.rdb1.conv1``, ``conv_body``, ``conv_up1`` ...) means every
published Real-ESRGAN checkpoint loads with ``strict=True``. After the network: how a state dict is
recognised, how the shipped ncnn graphs map onto it, and what fine-tuning keeps (`ARCHITECTURE`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from esrgan.archs.base import Architecture, ModelDescriptor, StateDict
from esrgan.archs.ncnn import ACTIVATION_LEAKY_RELU, NcnnLayer, NcnnTensor, activation
from esrgan.errors import WeightsError

RESIDUAL_SCALE = 0.2
LEAKY_SLOPE = 0.2
# Below 4x the input is folded into channels with pixel_unshuffle by this factor (x2plus: 2).
UNSHUFFLE_BY_SCALE = {1: 4, 2: 2}


def feature_buffer_pays(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a dense block should fill one feature buffer instead of concatenating.

    Only for a single NCHW-contiguous float32 image on the CPU: there a channel prefix of the buffer
    is itself a contiguous tensor, so each convolution reads it without a copy and only the new
    channels are written. In channels-last a prefix is strided and oneDNN copies it anyway, and
    bf16 gained nothing (both measured, see the README's speed section); batches make the prefix
    strided too; CUDA is not measured yet, so it keeps concatenating. Eager inference only: autograd
    cannot differentiate through the in-place slice writes, and tracers (ONNX export traces) and
    compilers see the plain ``torch.cat`` graph, which they fuse themselves.
    """
    if x.shape[0] != 1 or x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting())


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual.

    Attributes:
        feature_buffer: Allow the copy-free path (`feature_buffer_pays`); the outputs are the same
            bits either way. Benchmarks switch it off to time the concatenating path.
    """

    feature_buffer = True

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_buffer and feature_buffer_pays(x, self.conv1.weight):
            return self._forward_buffered(x)
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * RESIDUAL_SCALE + x

    def _forward_buffered(self, x: torch.Tensor) -> torch.Tensor:
        """The same block with one (1, num_feat + 4 * grow, H, W) buffer: each convolution reads its
        channel prefix and its activation is written straight into the next slice."""
        feat, grow = x.shape[1], self.conv1.out_channels
        features = x.new_empty((x.shape[0], feat + 4 * grow, *x.shape[2:]))
        features[:, :feat].copy_(x)
        end = feat
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            torch.ops.aten.leaky_relu.out(conv(features[:, :end]), LEAKY_SLOPE, out=features[:, end : end + grow])
            end += grow
        return self.conv5(features) * RESIDUAL_SCALE + x


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
        unshuffle = UNSHUFFLE_BY_SCALE.get(scale, 1)
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


# --- what the engine knows about RRDBNet -----------------------------------------------------------

NAME = "rrdbnet"
# conv_first's input channels give the scale, through the unshuffle: 3 (4x or 8x), 12 (2x), 48 (1x).
SCALE_BY_INPUT_CHANNELS = {3: 4, 12: 2, 48: 1}
FROZEN_SHARE = 0.7  # fine-tuning keeps conv_first and this share of the blocks (x4plus: 16 of 23)


def recognises(state: StateDict) -> bool:
    return "conv_first.weight" in state and "conv_last.weight" in state


def describe(state: StateDict) -> ModelDescriptor:
    first = state["conv_first.weight"]
    in_ch = first.shape[1]
    if in_ch not in SCALE_BY_INPUT_CHANNELS:
        raise WeightsError(f"an RRDBNet whose first convolution takes {in_ch} channels is not one we know "
                           "(3: 4x or 8x, 12: 2x, 48: 1x)")
    scale = 8 if "conv_up3.weight" in state else SCALE_BY_INPUT_CHANNELS[in_ch]
    blocks = len({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    grow = state["body.0.rdb1.conv1.weight"].shape[0] if "body.0.rdb1.conv1.weight" in state else 32
    out_ch = state["conv_last.weight"].shape[0]
    args = (("num_in_ch", 3), ("num_out_ch", out_ch), ("scale", scale), ("num_feat", first.shape[0]),
            ("num_block", blocks), ("num_grow_ch", grow))
    return ModelDescriptor(NAME, scale, 3, out_ch, args, UNSHUFFLE_BY_SCALE.get(scale, 1))


def freeze_rule(args: Mapping[str, int]) -> str:
    """conv_first and the first ~70% of the RRDB blocks: early features are kept, late ones adapt."""
    return f"conv_first,body.0-{max(0, int(args['num_block'] * FROZEN_SHARE) - 1)}"


def _conv_names(num_block: int) -> list[tuple[str, bool]]:
    """Official conv names of an x4 RRDBNet in execution order, with whether LeakyReLU follows."""
    names = [("conv_first", False)]
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                names.append((f"body.{block}.rdb{rdb}.conv{conv}", conv < 5))
    names += [("conv_body", False), ("conv_up1", True), ("conv_up2", True), ("conv_hr", True)]
    names.append(("conv_last", False))
    return names


def ncnn_state_dict(layers: list[NcnnLayer], blobs: list[NcnnTensor], args: Mapping[str, int]) -> StateDict:
    """Map an x4 RRDBNet's blobs, in order, onto official key names (the graph has 6 + 15 per block)."""
    convs = [b for b in blobs if b.layer.kind == "Convolution"]
    num_block, remainder = divmod(len(convs) - 6, 15)
    if remainder or num_block < 1 or len(convs) != len(blobs):
        raise WeightsError(f"{len(convs)} convolutions do not form an RRDBNet (6 + 15 per block)")
    if "num_block" in args and args["num_block"] != num_block:
        raise WeightsError(f"this RRDBNet graph has {num_block} blocks, not {args['num_block']}")
    if sum(layer.kind == "Interp" for layer in layers) != 2:
        raise WeightsError("an x4 RRDBNet upsamples twice; this graph does not")
    state = {}
    for (name, leaky), blob in zip(_conv_names(num_block), convs, strict=True):
        if (activation(blob.layer) == ACTIVATION_LEAKY_RELU) != leaky:
            raise WeightsError(f"activation after {blob.layer.name} does not match {name}")
        state[f"{name}.weight"] = torch.from_numpy(blob.weight.copy())
        state[f"{name}.bias"] = torch.from_numpy(blob.bias.copy())
    return state


ARCHITECTURE = Architecture(
    name=NAME, family="Real-ESRGAN", network=RRDBNet, recognises=recognises, describe=describe,
    freeze_rule=freeze_rule, ncnn_state_dict=ncnn_state_dict,
)
