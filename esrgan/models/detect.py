"""What a state dict is: one detector for the model store, the converter and the trainer alike.

`detect` asks each architecture of `esrgan.archs.ARCHITECTURES` in turn, which reads keys and tensor
shapes (never file names, never a library's tag text), and returns a frozen `ModelDescriptor`:
architecture, native scale, channels, and the arguments that rebuild it. Architectures we do not
define ourselves (SwinIR, DAT, ...) are recognised by spandrel, from its typed attributes only, and
can run but not be fine-tuned.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from esrgan import archs
from esrgan.archs.base import ModelDescriptor
from esrgan.errors import WeightsError
from esrgan.lazy_imports import lazy_import

SPANDREL_PREFIX = "spandrel:"
# Face restoration networks (`esrgan.faces`): spandrel knows them, but they restore aligned faces,
# not whole images, so the model store skips them and the face step picks them up.
FACE_ARCHS = ("GFPGAN", "RestoreFormer")

__all__ = ["FACE_ARCHS", "ModelDescriptor", "detect", "is_face_checkpoint", "load"]


def is_face_checkpoint(state: dict[str, torch.Tensor]) -> str | None:
    """The face architecture a state dict is (``"GFPGAN"``/``"RestoreFormer"``), or None."""
    registry = lazy_import("spandrel").MAIN_REGISTRY
    for arch in FACE_ARCHS:
        if registry[arch].detect(state):
            return arch
    return None


def _listed(state: dict[str, torch.Tensor]) -> ModelDescriptor | None:
    for architecture in archs.ARCHITECTURES:  # read at call time: a test may list one more
        found = architecture.detect(state)
        if found is not None:
            return found
    return None


def detect(state: dict[str, torch.Tensor]) -> ModelDescriptor:
    """Recognise a state dict by its keys and shapes.

    Raises:
        WeightsError: No architecture we or spandrel know has these keys and shapes.
    """
    found = _listed(state)
    if found is not None:
        return found
    return _spandrel(state)[1]


def load(state: dict[str, torch.Tensor]) -> tuple[nn.Module, ModelDescriptor]:
    """The network a state dict describes, with those weights loaded (``strict=True``).

    Our architectures are built on the meta device and take the state dict's tensors as their
    parameters (``assign=True``): no random initialisation to overwrite, no copy. So the network
    shares memory with ``state`` (tensors of another dtype than the network's are converted, as
    ``load_state_dict`` would); a caller that keeps ``state`` and changes either changes both.

    Raises:
        WeightsError: The state dict is not recognised or does not fit its architecture.
    """
    found = _listed(state)
    if found is None:
        return _spandrel(state)
    try:
        module = _assigned(found, state)
        if module is None:  # something the state dict does not hold: built and copied into instead
            module = found.build()
            module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"the weights do not fit a {found.family} {found.arch}: {exc}") from exc
    return module, found


def _assigned(found: ModelDescriptor, state: dict[str, torch.Tensor]) -> nn.Module | None:
    """The network built without storage and given ``state``'s tensors, or None where that leaves a
    tensor without storage (a buffer the state dict does not hold) or the network cannot be built so."""
    try:
        with torch.device("meta"):
            module = found.build()
    except (RuntimeError, NotImplementedError):  # an __init__ that reads its random weights
        return None
    dtypes = {name: tensor.dtype for name, tensor in module.state_dict().items()}
    module.load_state_dict({name: tensor.to(dtypes.get(name, tensor.dtype)) for name, tensor in state.items()},
                           strict=True, assign=True)
    if any(tensor.is_meta for tensor in (*module.parameters(), *module.buffers())):
        return None
    return module


def _spandrel(state: dict[str, torch.Tensor]) -> tuple[nn.Module, ModelDescriptor]:
    spandrel = lazy_import("spandrel")
    try:
        with warnings.catch_warnings():  # DAT's builder calls torch.meshgrid without indexing= (spandrel 0.4.2)
            warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
            loaded = spandrel.ModelLoader().load_from_state_dict(state)
    except (spandrel.UnsupportedModelError, RuntimeError, KeyError, ValueError) as exc:
        raise WeightsError(f"not a super-resolution model we recognise: {exc}") from exc
    descriptor = ModelDescriptor(
        f"{SPANDREL_PREFIX}{loaded.architecture.id}", int(loaded.scale), int(loaded.input_channels),
        int(loaded.output_channels), (), int(loaded.size_requirements.multiple_of),
    )
    return loaded.model, descriptor
