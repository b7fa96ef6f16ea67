"""A made-up architecture, written as a new one would be: one module ending in its ``ARCHITECTURE``.

`tests/test_architectures.py` lists it (one line) for the length of a test and checks that the engine
then loads, tiles and fine-tunes it with no other change. It folds its input 2x2 first, so its input
sides must be even: the size multiple has to reach the tiler for odd images to work.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from esrgan.archs.base import Architecture, ModelDescriptor, StateDict

NAME = "tinyfold"
FOLD = 2  # pixel_unshuffle factor: input sides must be multiples of it


class TinyFold(nn.Module):
    """Unshuffle 2x2, two 3x3 convolutions, pixel-shuffle up to ``upscale``.

    Shapes: (N, channels, H, W) with even H and W -> (N, channels, H*upscale, W*upscale).
    """

    def __init__(self, channels: int = 3, num_feat: int = 8, upscale: int = 2) -> None:
        super().__init__()
        self.fold_in = nn.Conv2d(channels * FOLD * FOLD, num_feat, 3, 1, 1)
        self.fold_out = nn.Conv2d(num_feat, channels * (FOLD * upscale) ** 2, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(FOLD * upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.fold_in(F.pixel_unshuffle(x, FOLD)), 0.2)
        return self.shuffle(self.fold_out(feat))


def recognises(state: StateDict) -> bool:
    return "fold_in.weight" in state and "fold_out.weight" in state


def describe(state: StateDict) -> ModelDescriptor:
    first, last = state["fold_in.weight"], state["fold_out.weight"]
    channels = first.shape[1] // (FOLD * FOLD)
    upscale = round((last.shape[0] / channels) ** 0.5) // FOLD
    args = (("channels", channels), ("num_feat", first.shape[0]), ("upscale", upscale))
    return ModelDescriptor(NAME, upscale, channels, channels, args, FOLD)


def freeze_rule(args: Mapping[str, int]) -> str:
    return "fold_in"


ARCHITECTURE = Architecture(name=NAME, family="Tiny", network=TinyFold, recognises=recognises,
                            describe=describe, freeze_rule=freeze_rule)
