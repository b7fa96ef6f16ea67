"""What an architecture module provides (`Architecture`) and what a recognised state dict is (`ModelDescriptor`).

Each module of `esrgan.archs` (rrdbnet.py, srvgg.py, cugan.py ...) ends with one ``ARCHITECTURE``, an
`Architecture` that gathers everything we know about that network: how to build it, how to recognise
its state dicts, how to map shipped ncnn files onto its keys, and which layers fine-tuning keeps.
`esrgan.archs.ARCHITECTURES` lists them once, in the order detection tries them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from esrgan.archs.ncnn import NcnnLayer, NcnnTensor
from esrgan.errors import WeightsError

StateDict = dict[str, torch.Tensor]
ArchArgs = tuple[tuple[str, int], ...]
NcnnMapper = Callable[[list[NcnnLayer], list[NcnnTensor], Mapping[str, int]], StateDict]


@dataclass(frozen=True)
class ModelDescriptor:
    """What a state dict is.

    Attributes:
        arch: The architecture's name (``Architecture.name``), or ``"spandrel:<id>"`` for a network
            only spandrel knows.
        scale: Native scale.
        in_channels: Image channels in.
        out_channels: Image channels out.
        arch_args: Keyword arguments that rebuild the network (empty for spandrel's).
        size_multiple: Input sides (and tile offsets) must be multiples of this.
        architecture: The `Architecture` that recognised it; None for spandrel's.
    """

    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    arch_args: ArchArgs = ()
    size_multiple: int = 1
    architecture: Architecture | None = field(default=None, repr=False, compare=False)

    @property
    def family(self) -> str:
        """The model family for listings (``"Real-ESRGAN"``, ``"Real-CUGAN"`` ...; ``"custom"`` for spandrel's)."""
        return self.architecture.family if self.architecture else "custom"

    @property
    def ours(self) -> bool:
        """Defined in `esrgan.archs`, so it can be rebuilt from its arguments and fine-tuned."""
        return self.architecture is not None

    def build(self) -> nn.Module:
        """A fresh network of this shape (random weights: load a state dict into it).

        Raises:
            WeightsError: The network is one only spandrel knows (spandrel builds it as it loads).
        """
        if self.architecture is None:
            raise WeightsError(f"{self.arch} networks are built by spandrel as they load, not from arguments")
        return self.architecture.build(self.arch_args)

    def is_network(self, arch: str, arch_args: ArchArgs) -> bool:
        """Whether ``arch`` built with ``arch_args`` (missing ones at their defaults) is this very network.

        This is how a user's checkpoint finds the catalogue entry it stands for: a `ModelSpec` names
        only the arguments that tell its models apart.
        """
        if self.architecture is None or arch != self.arch:
            return False
        return self.architecture.arguments(arch_args) == self.architecture.arguments(self.arch_args)


@dataclass(frozen=True)
class Architecture:
    """Everything the engine knows about one network architecture.

    Attributes:
        name: Short unique name: what ``ModelSpec.arch`` and ``ModelDescriptor.arch`` say.
        family: Model family shown to users (``"Real-ESRGAN"``).
        network: The ``nn.Module`` class (or factory), called with keyword arguments only.
        recognises: A quick test of a state dict's keys: True when it is this architecture's. The
            first architecture of the list that recognises a state dict describes it.
        describe: State dict -> `ModelDescriptor` (scale, channels, the arguments that rebuild it,
            the size multiple), from key names and tensor shapes only. Raises WeightsError for a
            variant it recognises but cannot run.
        freeze_rule: The full arguments (`arguments`) -> the default ``--freeze`` rule of fine-tuning,
            e.g. ``"conv_first,body.0-15"`` (prefixes of parameter names; ``a.0-3`` is a range).
        ncnn_state_dict: Shipped ncnn graph -> official-key state dict: (layers, blobs, the
            catalogue's arguments) -> state dict, checking the structure and raising WeightsError;
            None when no ncnn files of this architecture are shipped.
    """

    name: str
    family: str
    network: Callable[..., nn.Module]
    recognises: Callable[[StateDict], bool]
    describe: Callable[[StateDict], ModelDescriptor]
    freeze_rule: Callable[[Mapping[str, int]], str]
    ncnn_state_dict: NcnnMapper | None = None

    def detect(self, state: StateDict) -> ModelDescriptor | None:
        """This architecture's reading of a state dict, or None when it is not one of ours."""
        if not self.recognises(state):
            return None
        return replace(self.describe(state), arch=self.name, architecture=self)

    def build(self, arch_args: ArchArgs | Mapping[str, int]) -> nn.Module:
        """A fresh network with these keyword arguments. Raises WeightsError for arguments it lacks."""
        try:
            return self.network(**dict(arch_args))
        except TypeError as exc:
            raise WeightsError(f"a {self.name} network cannot be built with {dict(arch_args)}: {exc}") from exc

    def arguments(self, arch_args: ArchArgs | Mapping[str, int]) -> dict[str, object]:
        """Every keyword argument of the network: these, and the network's defaults for the rest."""
        parameters = inspect.signature(self.network).parameters
        full = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
        full.update(dict(arch_args))
        return full

    def default_freeze(self, arch_args: ArchArgs | Mapping[str, int]) -> str:
        """The layers fine-tuning keeps unless told otherwise (see `freeze_rule`)."""
        return self.freeze_rule(self.arguments(arch_args))
