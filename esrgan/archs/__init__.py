"""Pure network definitions (``nn.Module``) with the official Real-ESRGAN / BasicSR key names."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from esrgan.archs.discriminator import UNetDiscriminatorSN
from esrgan.archs.rrdbnet import RRDBNet
from esrgan.archs.srvgg import SRVGGNetCompact
from esrgan.errors import WeightsError


@dataclass(frozen=True)
class ArchDescriptor:
    """What an official-key state dict is: its architecture and the arguments to rebuild it."""

    arch: str
    kwargs: tuple[tuple[str, int], ...]

    def build(self) -> torch.nn.Module:
        cls = {"rrdbnet": RRDBNet, "srvgg": SRVGGNetCompact}[self.arch]
        return cls(**dict(self.kwargs))


def describe_state_dict(state: dict[str, torch.Tensor]) -> ArchDescriptor:
    """Recognise an official-key RRDBNet or SRVGGNetCompact state dict from its keys and shapes.

    Raises:
        WeightsError: The keys are not those of either architecture.
    """
    if "conv_first.weight" in state:
        blocks = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
        in_ch = state["conv_first.weight"].shape[1]
        scale = 8 if "conv_up3.weight" in state else {3: 4, 12: 2, 48: 1}.get(in_ch, 4)
        return ArchDescriptor("rrdbnet", (("num_block", len(blocks)), ("scale", scale),
                                          ("num_feat", state["conv_first.weight"].shape[0])))
    if "body.0.weight" in state and state["body.0.weight"].dim() == 4:
        convs = sorted(int(k.split(".")[1]) for k in state if k.endswith(".weight") and state[k].dim() == 4)
        last = state[f"body.{convs[-1]}.weight"].shape[0]
        upscale = int(round((last / 3) ** 0.5))
        return ArchDescriptor("srvgg", (("num_feat", state["body.0.weight"].shape[0]),
                                        ("num_conv", len(convs) - 2), ("upscale", upscale)))
    raise WeightsError("the state dict is neither an RRDBNet nor an SRVGGNetCompact with official keys")


__all__ = ["ArchDescriptor", "RRDBNet", "SRVGGNetCompact", "UNetDiscriminatorSN", "describe_state_dict"]
