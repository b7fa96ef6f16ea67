"""Face restoration networks from the user's own checkpoint in ``weights/``: GFPGAN v1.3/v1.4 ("clean"
architecture, 512 px) and RestoreFormer, both as spandrel 0.4.2 defines and recognises them.

CodeFormer is left out on purpose: spandrel keeps it in spandrel-extra-arches, under a
non-commercial licence. Nothing here downloads anything: without such a checkpoint the option is
simply unavailable, and `HOW_TO_ADD` says what to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from esrgan.errors import FacesUnavailableError, WeightsError
from esrgan.lazy_imports import lazy_import
from esrgan.models.catalogue import CHECKPOINT_SUFFIXES, read_checkpoint
from esrgan.models.detect import is_face_checkpoint

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

log = logging.getLogger(__name__)

FACE_SIZE = 512  # both networks take and give 512x512 aligned faces
HOW_TO_ADD = (
    "Restore faces: put a GFPGAN v1.3 or v1.4 checkpoint (GFPGANv1.3.pth, GFPGANv1.4.pth, from "
    "TencentARC/GFPGAN's releases) or a RestoreFormer checkpoint (RestoreFormer.pth) in weights/; "
    "it is recognised by its keys, whatever its file name. CodeFormer is not supported (its licence "
    "is non-commercial). The checkpoint's licence is its authors'; this project ships none."
)


class FaceRestorerError(WeightsError):
    """A checkpoint given as a face restorer is unreadable or is not GFPGAN or RestoreFormer."""


@dataclass(frozen=True)
class FaceRestorer:
    """A loaded face restoration network.

    Attributes:
        arch: ``"GFPGAN"`` or ``"RestoreFormer"``.
        path: The checkpoint it came from.
        descriptor: spandrel's model descriptor (its ``.model`` is the nn.Module, in eval mode).
    """

    arch: str
    path: Path
    descriptor: ImageModelDescriptor

    @torch.inference_mode()
    def restore(self, faces: np.ndarray) -> np.ndarray:
        """Restore aligned faces: (N, 512, 512, 3) float32 RGB in [0, 1] -> the same.

        GFPGAN works in [-1, 1] (spandrel's GFPGAN passes the tensor through unchanged, so we scale
        it here) and runs with its stored noise maps, not fresh noise, so a result is reproducible;
        spandrel's RestoreFormer call does its own scaling.
        """
        device = next(self.descriptor.model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(faces.transpose(0, 3, 1, 2))).to(device)
        if self.arch == "GFPGAN":
            out = (self.descriptor.model(x * 2 - 1, return_rgb=False, randomize_noise=False)[0] + 1) / 2
        else:
            out = self.descriptor(x)
        return out.clamp(0, 1).float().cpu().numpy().transpose(0, 2, 3, 1)


def _keys_only(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, memory-mapped where the format allows (cheap on a 350 MB file)."""
    if path.suffix != ".safetensors":
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, OSError, ValueError):
            return read_checkpoint(path)[0]  # old (non-zip) pickles cannot be mapped
        if isinstance(data, dict):
            for wrapper in ("params_ema", "params", "state_dict"):
                if isinstance(data.get(wrapper), dict):
                    data = data[wrapper]
                    break
            return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    return read_checkpoint(path)[0]


def find_face_checkpoint(weights_dir: Path) -> Path | None:
    """The first face restoration checkpoint in ``weights_dir`` (sorted by name), or None."""
    if not weights_dir.is_dir():
        return None
    for path in sorted(p for p in weights_dir.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file()):
        try:
            if is_face_checkpoint(_keys_only(path)):
                return path
        except WeightsError as exc:
            log.debug("skipping %s: %s", path.name, exc)
    return None


def load_restorer(path: Path, device: str = "cpu") -> FaceRestorer:
    """Load a face restoration checkpoint (read without running pickled code).

    Raises:
        FaceRestorerError: The file is unreadable, or not GFPGAN or RestoreFormer.
    """
    try:
        state, _ = read_checkpoint(path)
    except WeightsError as exc:
        raise FaceRestorerError(str(exc)) from exc
    arch = is_face_checkpoint(state)
    if arch is None:
        raise FaceRestorerError(f"{path.name} is not a GFPGAN or RestoreFormer checkpoint")
    spandrel = lazy_import("spandrel")
    try:
        descriptor = spandrel.ModelLoader(torch.device(device)).load_from_state_dict(state)
    except (spandrel.UnsupportedModelError, RuntimeError, KeyError, ValueError) as exc:
        raise FaceRestorerError(f"{path.name} looks like {arch} but does not load: {exc}") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise FaceRestorerError(f"{path.name} is not an image-to-image model")
    descriptor.model.eval()
    return FaceRestorer(arch, path, descriptor)


def restorer_from_weights(weights_dir: Path, device: str = "cpu") -> FaceRestorer:
    """The restorer of the face checkpoint in ``weights_dir``.

    Raises:
        FacesUnavailableError: There is none; the message says how to add one.
        FaceRestorerError: It does not load.
    """
    path = find_face_checkpoint(weights_dir)
    if path is None:
        raise FacesUnavailableError(HOW_TO_ADD)
    return load_restorer(path, device)
