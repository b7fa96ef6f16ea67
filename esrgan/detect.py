"""What a state dict is: one detector for the model store and the trainer alike.

`detect` reads keys and tensor shapes (never file names, never a library's tag text) and returns a
frozen `ModelDescriptor`: architecture, native scale, channels, and the arguments that rebuild it.
`build` is the one way to construct a network: a name -> constructor table. Architectures we do not
define ourselves (SwinIR, DAT, ...) are recognised by spandrel, from its typed attributes only, and
can run but not be fine-tuned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from esrgan.archs.cugan import RealCUGAN
from esrgan.archs.rrdbnet import RRDBNet
from esrgan.archs.srvgg import SRVGGNetCompact
from esrgan.errors import WeightsError

ArchArgs = tuple[tuple[str, int], ...]

# name -> constructor taking keyword arguments only. The one place a network is built from a name.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "rrdbnet": RRDBNet,
    "srvgg": SRVGGNetCompact,
    "cugan": RealCUGAN,
}
FAMILIES = {"rrdbnet": "Real-ESRGAN", "srvgg": "Real-ESRGAN", "cugan": "Real-CUGAN"}
SPANDREL_PREFIX = "spandrel:"
# RRDBNet folds its input with pixel_unshuffle below 4x: conv_first's input channels give the scale.
RRDB_SCALE_BY_INPUT = {3: 4, 12: 2, 48: 1}


@dataclass(frozen=True)
class ModelDescriptor:
    """What a state dict is.

    Attributes:
        arch: A key of `ARCHITECTURES`, or ``"spandrel:<id>"`` for an architecture only spandrel knows.
        scale: Native scale.
        in_channels: Image channels in.
        out_channels: Image channels out.
        arch_args: Keyword arguments that rebuild the network with `build` (empty for spandrel's).
        size_multiple: Input sides (and tile offsets) must be multiples of this.
    """

    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    arch_args: ArchArgs = ()
    size_multiple: int = 1

    @property
    def kwargs(self) -> ArchArgs:
        """The architecture's arguments (older name of `arch_args`)."""
        return self.arch_args

    @property
    def family(self) -> str:
        return FAMILIES.get(self.arch, "custom")

    @property
    def ours(self) -> bool:
        """Defined in `esrgan.archs`, so it can be rebuilt from its arguments and fine-tuned."""
        return self.arch in ARCHITECTURES

    def build(self) -> nn.Module:
        """A fresh network of this shape (random weights: load a state dict into it)."""
        return build(self.arch, self.arch_args)


def build(arch: str, arch_args: ArchArgs | dict) -> nn.Module:
    """Construct the network ``arch`` with these keyword arguments. Raises WeightsError if unknown."""
    try:
        constructor = ARCHITECTURES[arch]
    except KeyError:
        raise WeightsError(f"no architecture named {arch!r}; known: {', '.join(ARCHITECTURES)}") from None
    return constructor(**dict(arch_args))


def _rrdbnet(state: dict[str, torch.Tensor]) -> ModelDescriptor:
    first = state["conv_first.weight"]
    in_ch = first.shape[1]
    if in_ch not in RRDB_SCALE_BY_INPUT:
        raise WeightsError(f"an RRDBNet whose first convolution takes {in_ch} channels is not one we know "
                           "(3: 4x or 8x, 12: 2x, 48: 1x)")
    scale = 8 if "conv_up3.weight" in state else RRDB_SCALE_BY_INPUT[in_ch]
    blocks = len({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    grow = state["body.0.rdb1.conv1.weight"].shape[0] if "body.0.rdb1.conv1.weight" in state else 32
    out_ch = state["conv_last.weight"].shape[0]
    args = (("num_in_ch", 3), ("num_out_ch", out_ch), ("scale", scale), ("num_feat", first.shape[0]),
            ("num_block", blocks), ("num_grow_ch", grow))
    return ModelDescriptor("rrdbnet", scale, 3, out_ch, args, {1: 4, 2: 2}.get(scale, 1))


def _srvgg(state: dict[str, torch.Tensor]) -> ModelDescriptor:
    convs = sorted(int(k.split(".")[1]) for k in state if k.endswith(".weight") and state[k].dim() == 4)
    first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    in_ch = first.shape[1]
    upscale = round((last.shape[0] / in_ch) ** 0.5)
    if upscale < 1 or in_ch * upscale * upscale != last.shape[0]:
        raise WeightsError(f"an SRVGGNetCompact with {last.shape[0]} output channels has no whole scale")
    args = (("num_in_ch", in_ch), ("num_out_ch", in_ch), ("num_feat", first.shape[0]),
            ("num_conv", len(convs) - 2), ("upscale", upscale))
    return ModelDescriptor("srvgg", upscale, in_ch, in_ch, args, 1)


def _cugan(state: dict[str, torch.Tensor]) -> ModelDescriptor:
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
    return ModelDescriptor("cugan", scale, in_ch, out_ch, args, {2: 2, 3: 4, 4: 2}[scale])


def _ours(state: dict[str, torch.Tensor]) -> ModelDescriptor | None:
    if "conv_first.weight" in state and "conv_last.weight" in state:
        return _rrdbnet(state)
    if "unet1.conv1.conv.0.weight" in state and "unet2.conv_bottom.weight" in state:
        return _cugan(state)
    if "body.0.weight" in state and state["body.0.weight"].dim() == 4 and "body.1.weight" in state:
        return _srvgg(state)
    return None


def detect(state: dict[str, torch.Tensor]) -> ModelDescriptor:
    """Recognise a state dict by its keys and shapes.

    Raises:
        WeightsError: No architecture we or spandrel know has these keys and shapes.
    """
    found = _ours(state)
    if found is not None:
        return found
    return _spandrel(state)[1]


def load(state: dict[str, torch.Tensor]) -> tuple[nn.Module, ModelDescriptor]:
    """The network a state dict describes, with those weights loaded (``strict=True``).

    Raises:
        WeightsError: The state dict is not recognised or does not fit its architecture.
    """
    found = _ours(state)
    if found is None:
        return _spandrel(state)
    module = found.build()
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"the weights do not fit a {found.family} {found.arch}: {exc}") from exc
    return module, found


def _spandrel(state: dict[str, torch.Tensor]) -> tuple[nn.Module, ModelDescriptor]:
    from spandrel import ModelLoader, UnsupportedModelError

    try:
        loaded = ModelLoader().load_from_state_dict(state)
    except (UnsupportedModelError, RuntimeError, KeyError, ValueError) as exc:
        raise WeightsError(f"not a super-resolution model we recognise: {exc}") from exc
    descriptor = ModelDescriptor(
        f"{SPANDREL_PREFIX}{loaded.architecture.id}", int(loaded.scale), int(loaded.input_channels),
        int(loaded.output_channels), (), int(loaded.size_requirements.multiple_of),
    )
    return loaded.model, descriptor
