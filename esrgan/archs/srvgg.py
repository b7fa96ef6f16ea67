"""SRVGGNetCompact, the small Real-ESRGAN model (realesr-animevideov3), with official key names.

After the network: how a state dict is recognised, how the shipped ncnn graph maps onto it, and what
fine-tuning keeps (`ARCHITECTURE`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from esrgan.archs.base import Architecture, ModelDescriptor, StateDict
from esrgan.archs.ncnn import NcnnLayer, NcnnTensor
from esrgan.errors import WeightsError


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


# --- what the engine knows about SRVGGNetCompact ---------------------------------------------------

NAME = "srvgg"
FROZEN_SHARE = 0.7  # fine-tuning keeps the first ~70% of the layers (convolutions and activations)


def recognises(state: StateDict) -> bool:
    return "body.0.weight" in state and state["body.0.weight"].dim() == 4 and "body.1.weight" in state


def describe(state: StateDict) -> ModelDescriptor:
    convs = sorted(int(k.split(".")[1]) for k in state if k.endswith(".weight") and state[k].dim() == 4)
    first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    in_ch = first.shape[1]
    upscale = round((last.shape[0] / in_ch) ** 0.5)
    if upscale < 1 or in_ch * upscale * upscale != last.shape[0]:
        raise WeightsError(f"an SRVGGNetCompact with {last.shape[0]} output channels has no whole scale")
    args = (("num_in_ch", in_ch), ("num_out_ch", in_ch), ("num_feat", first.shape[0]),
            ("num_conv", len(convs) - 2), ("upscale", upscale))
    return ModelDescriptor(NAME, upscale, in_ch, in_ch, args, 1)


def freeze_rule(args: Mapping[str, int]) -> str:
    return f"body.0-{max(0, int((2 * args['num_conv'] + 2) * FROZEN_SHARE) - 1)}"


def ncnn_state_dict(layers: list[NcnnLayer], blobs: list[NcnnTensor], args: Mapping[str, int]) -> StateDict:
    """Map the blobs, which alternate Convolution and PReLU as ``body`` does, onto ``body.i``."""
    kinds = [b.layer.kind for b in blobs]
    expected_pairs = ["Convolution", "PReLU"] * ((len(blobs) - 1) // 2) + ["Convolution"]
    if kinds != expected_pairs or len(blobs) < 5:
        raise WeightsError("blobs do not alternate Convolution/PReLU as SRVGGNetCompact does")
    num_conv = (len(blobs) - 1) // 2 - 1
    if "num_conv" in args and args["num_conv"] != num_conv:
        raise WeightsError(f"this SRVGGNetCompact graph has {num_conv} hidden convolutions, not {args['num_conv']}")
    outputs = blobs[-1].weight.shape[0]
    if "upscale" in args and outputs != blobs[0].weight.shape[1] * args["upscale"] ** 2:
        raise WeightsError(f"this SRVGGNetCompact graph ends in {outputs} channels, not a {args['upscale']}x one")
    state = {}
    for index, blob in enumerate(blobs):
        state[f"body.{index}.weight"] = torch.from_numpy(blob.weight.copy())
        if blob.bias is not None:
            state[f"body.{index}.bias"] = torch.from_numpy(blob.bias.copy())
    return state


ARCHITECTURE = Architecture(
    name=NAME, family="Real-ESRGAN", network=SRVGGNetCompact, recognises=recognises, describe=describe,
    freeze_rule=freeze_rule, ncnn_state_dict=ncnn_state_dict,
)
