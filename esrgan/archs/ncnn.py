"""Reading ncnn model files: the ``.param`` graph and the ``.bin`` weights it describes.

Format facts, checked against the shipped files: a ``.param`` is text (magic 7767517), one layer per
line in execution order. The ``.bin`` holds, in that order, for each Convolution, Deconvolution and
InnerProduct a 4-byte tag (0x01306B47: fp16 follows, 0: fp32) then the weights (Convolution and
InnerProduct: [out, in, kh, kw]; Deconvolution: [out, in, kh, kw] too, where PyTorch's
ConvTranspose2d keeps [in, out, kh, kw]), then ``num_output`` untagged fp32 biases; a PReLU holds
``num_slope`` untagged fp32 slopes; nothing else carries data. Activations are fused into the layer
as ``9=N`` (1: ReLU, 2: LeakyReLU with its slope in ``-23310``, 4: sigmoid).

What the blobs mean (which official key each one is) is each architecture's own knowledge: see the
``ncnn_state_dict`` of the modules in `esrgan.archs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esrgan.errors import WeightsError

PARAM_MAGIC = "7767517"
TAG_FP16 = 0x01306B47
TAG_FP32 = 0
ACTIVATION_NONE = 0
ACTIVATION_RELU = 1
ACTIVATION_LEAKY_RELU = 2
ACTIVATION_SIGMOID = 4
WEIGHTED_LAYERS = ("Convolution", "Deconvolution", "InnerProduct")


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file."""

    kind: str
    name: str
    params: dict[int, str]
    bottoms: tuple[str, ...] = ()  # the blobs it reads
    tops: tuple[str, ...] = ()  # the blobs it writes


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
        layers.append(NcnnLayer(kind=fields[0], name=fields[1], params=params, bottoms=tuple(fields[4 : 4 + n_in]),
                                tops=tuple(fields[4 + n_in : 4 + n_in + n_out])))
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


def activation(layer: NcnnLayer) -> int:
    """The activation fused into a layer (one of the ``ACTIVATION_*`` codes)."""
    return int(layer.params.get(9, ACTIVATION_NONE))


def unet_activation(name: str, last: str) -> int:
    """The activation fused after the layer of official key ``name`` in the U-Net family's graphs
    (Real-CUGAN's, waifu2x's UpConv7 and CUnet): ReLU after an SE block's first 1x1 convolution,
    sigmoid after its second, none after a U-Net's bottom convolution or the network's output layer
    ``last``, LeakyReLU after every other layer."""
    if name.endswith("seblock.conv1"):
        return ACTIVATION_RELU
    if name.endswith("seblock.conv2"):
        return ACTIVATION_SIGMOID
    if name.endswith("conv_bottom") or name == last:
        return ACTIVATION_NONE
    return ACTIVATION_LEAKY_RELU


def leaky_slope(layer: NcnnLayer, default: float) -> float:
    """The negative slope of a layer's fused LeakyReLU (stored as ``-23310=1,slope``), or ``default``."""
    stored = layer.params.get(-23310)
    return default if stored is None else float(stored.split(",")[-1])
