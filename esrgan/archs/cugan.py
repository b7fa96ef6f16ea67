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
  built with ``pro=False`` (see `ncnn_state_dict`).

Shapes: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, H*scale, W*scale), any H and W >= 1.

After the networks: how a state dict is recognised, how the shipped ncnn graphs map onto it, and
what fine-tuning keeps (`ARCHITECTURE`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from spandrel.architectures.RealCUGAN import UpCunet2x as _UpCunet2x
from spandrel.architectures.RealCUGAN import UpCunet3x as _UpCunet3x
from spandrel.architectures.RealCUGAN import UpCunet4x as _UpCunet4x
from torch import nn
from torch.nn import functional as F

from esrgan.archs.base import ArchArgs, Architecture, ModelDescriptor, StateDict
from esrgan.errors import WeightsError
from esrgan.ncnn import (
    ACTIVATION_LEAKY_RELU,
    ACTIVATION_NONE,
    ACTIVATION_RELU,
    ACTIVATION_SIGMOID,
    WEIGHTED_LAYERS,
    NcnnLayer,
    NcnnTensor,
    activation,
    leaky_slope,
)

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


# --- what the engine knows about Real-CUGAN (detection, ncnn layout, fine-tuning) ------------------
# Apart from the networks above on purpose: their classes carry the padding facts (`size_multiple`,
# `internal_pad`), and what follows reads them from there.

NAME = "cugan"
LEAKY_SLOPE = 0.1  # every LeakyReLU of upstream's UpCunet
SE_BLOCKS = 4  # squeeze-and-excitation blocks of every UpCunet (one global-average Pooling each)


def size_multiple(scale: int) -> int:
    """The alignment a tile needs at this native scale (the grid upstream pads the image to)."""
    return NETWORKS[scale].size_multiple  # type: ignore[attr-defined]


def recognises(state: StateDict) -> bool:
    return "unet1.conv1.conv.0.weight" in state and "unet2.conv_bottom.weight" in state


def describe(state: StateDict) -> ModelDescriptor:
    in_ch = state["unet1.conv1.conv.0.weight"].shape[1]
    if "conv_final.weight" in state:
        scale, out_ch = 4, state["conv_final.weight"].shape[0] // 4
        if out_ch * 4 == in_ch:
            raise WeightsError("this is Real-CUGAN's 2x 'fast' variant, which we do not run")
    else:
        scale = 3 if state["unet1.conv_bottom.weight"].shape[2] == 5 else 2
        out_ch = state["unet2.conv_bottom.weight"].shape[0]
    args: ArchArgs = (("scale", scale), ("pro", int("pro" in state)), ("in_channels", in_ch),
                      ("out_channels", out_ch))
    return ModelDescriptor(NAME, scale, in_ch, out_ch, args, size_multiple(scale))


def freeze_rule(args: Mapping[str, int]) -> str:
    """The first U-Net: it restores, the second one refines."""
    return "unet1"


def _activation_after(name: str) -> int:
    """The activation upstream's UpCunet applies right after the layer of this official name."""
    if name.endswith("seblock.conv1"):
        return ACTIVATION_RELU
    if name.endswith("seblock.conv2"):
        return ACTIVATION_SIGMOID
    if name.endswith("conv_bottom") or name == "conv_final":
        return ACTIVATION_NONE
    return ACTIVATION_LEAKY_RELU


def ncnn_state_dict(layers: list[NcnnLayer], blobs: list[NcnnTensor], args: Mapping[str, int]) -> StateDict:
    """Map a Real-CUGAN graph's blobs onto upstream's key names, layer by layer in execution order.

    "pro" graphs convert like the others: the ncnn runtime (realcugan-ncnn-vulkan) feeds them exactly
    as it feeds "se" graphs, with no [0.15, 0.85] input mapping, so the converted network is a plain
    UpCunet without upstream's ``pro`` flag, and computes what that runtime computes.

    Upstream registers its modules in the order they run, so the n-th weighted ncnn layer is the n-th
    (weight, bias) pair of the PyTorch module; each pair is checked for kind (convolution, transposed
    convolution, the SE block's 1x1 convolutions stored as InnerProduct), shape and fused activation.

    Args:
        args: The catalogue's arguments; ``scale`` (2, 3 or 4) says which graph to expect.
    """
    scale = int(args.get("scale", 0))
    if scale not in NETWORKS:
        raise WeightsError(f"Real-CUGAN exists at scales 2, 3 and 4, not {scale}")
    network = RealCUGAN(scale=scale)
    reference = network.state_dict()
    names = [k[: -len(".weight")] for k in reference if k.endswith(".weight")]
    kinds = {name: "Deconvolution" if isinstance(module, nn.ConvTranspose2d)
             else "InnerProduct" if "seblock" in name else "Convolution"
             for name, module in network.named_modules() if name in names}
    if len(blobs) != len(names) or any(b.layer.kind not in WEIGHTED_LAYERS for b in blobs):
        raise WeightsError(f"{len(blobs)} weighted layers do not form a {scale}x Real-CUGAN ({len(names)})")
    if sum(layer.kind == "Pooling" for layer in layers) != SE_BLOCKS:
        raise WeightsError("a Real-CUGAN has four squeeze-and-excitation blocks; this graph does not")
    state: StateDict = {}
    for name, blob in zip(names, blobs, strict=True):
        weight = torch.from_numpy(blob.weight.copy())
        if blob.layer.kind == "Deconvolution":
            weight = weight.transpose(0, 1).contiguous()  # ncnn [out, in] -> ConvTranspose2d [in, out]
        expected = reference[f"{name}.weight"].shape
        if blob.layer.kind != kinds[name] or weight.shape != expected:
            raise WeightsError(f"layer {blob.layer.name} ({blob.layer.kind} {tuple(weight.shape)}) "
                               f"does not match {name} ({kinds[name]} {tuple(expected)})")
        fused = activation(blob.layer)
        if fused != _activation_after(name) or (
                fused == ACTIVATION_LEAKY_RELU and abs(leaky_slope(blob.layer, LEAKY_SLOPE) - LEAKY_SLOPE) > 1e-6):
            raise WeightsError(f"activation after {blob.layer.name} does not match {name}")
        if blob.bias is None:
            raise WeightsError(f"layer {blob.layer.name} has no bias; {name} does")
        state[f"{name}.weight"] = weight
        state[f"{name}.bias"] = torch.from_numpy(blob.bias.copy())
    if state.keys() != reference.keys():
        raise WeightsError("the converted Real-CUGAN lacks keys of the upstream network")
    return state


ARCHITECTURE = Architecture(
    name=NAME, family="Real-CUGAN", network=RealCUGAN, recognises=recognises, describe=describe,
    freeze_rule=freeze_rule, ncnn_state_dict=ncnn_state_dict,
)
