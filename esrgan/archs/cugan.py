"""Real-CUGAN (bilibili's UpCunet v3): 2x, 3x and 4x anime upscalers, with the official key names.

The networks are spandrel's (a faithful copy of upstream ``upcunet_v3.py``: ``unet1.conv1.conv.0``,
``unet2.conv3.seblock.conv1``, ``conv_final`` ...), subclassed on first use (`classes`): importing any
part of spandrel imports all its architectures, seconds that a run of another model never pays. What
this module adds is what our tiled runner needs to know about them:

* Upstream's padding, once: the image is reflect-padded by `prepadding` on every side and, in the same
  reflect, to the alignment its U-Nets need (a multiple of `size_multiple`: 2 at 2x and 4x, 4 at 3x) on
  the bottom and right, exactly as realcugan-ncnn-vulkan's ``process_cpu`` and ``upcunet_v3.py`` do.
  The U-Nets' "valid" convolutions then consume that context: `forward_valid` maps a window of
  ``core + 2 * prepadding`` pixels to exactly ``core * scale`` output pixels, so tiles cut on the
  alignment grid need no blending (see `esrgan.tiling.plan`, "consumes context").
* Their squeeze-excitation blocks (`se_blocks`, in forward order) take their channel means through
  `esrgan.tiling.se_sync.channel_mean`, so a tiled run can use the means of the whole image.
* A minimum side: reflect padding needs the input larger than the pad, so smaller inputs are padded
  by replicating the border instead (no upstream output to equal there).
* Upstream's PyTorch "pro" checkpoints carry a ``pro`` buffer and map inputs to [0.15, 0.85]; the
  shipped ncnn "pro" graphs are run by their runtime without that mapping, so our converted ones are
  built with ``pro=False`` (see `ncnn_state_dict`).

Shapes: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, H*scale, W*scale), any H and W >= 1.

After the networks: how a state dict is recognised, how the shipped ncnn graphs map onto it, and
what fine-tuning keeps (`ARCHITECTURE`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import cache
from types import ModuleType

import torch
from torch import nn
from torch.nn import functional as F

from esrgan.archs.base import ArchArgs, Architecture, ModelDescriptor, StateDict
from esrgan.archs.ncnn import (
    ACTIVATION_LEAKY_RELU,
    WEIGHTED_LAYERS,
    NcnnLayer,
    NcnnTensor,
    activation,
    leaky_slope,
    unet_activation,
)
from esrgan.errors import WeightsError
from esrgan.lazy_imports import lazy_import
from esrgan.tiling.se_sync import channel_mean

PRO_SCALE, PRO_OFFSET = 0.7, 0.15  # "pro" checkpoints see inputs mapped to [0.15, 0.85]
UNET_CROP = 20  # what UNet2 crops from UNet1's output
OUTPUT_LAYER = "conv_final"  # the 4x network's last convolution (no activation after it)


# The networks' facts, per native scale: the alignment a tile needs (upstream pads to it) and the
# context the valid convolutions consume on each side. Here rather than on the classes alone, so
# that detection reads them without building the classes (which imports spandrel: 2-14 s on a busy 2-core CPU).
SIZE_MULTIPLES = {2: 2, 3: 4, 4: 2}
PREPADDINGS = {2: 18, 3: 14, 4: 19}
NETWORK_SCALES = (2, 3, 4)


def upstream() -> ModuleType:
    """spandrel's copy of upstream ``upcunet_v3.py`` (imported on first use: importing any part of
    spandrel imports all of its architectures, seconds of a CLI run that never needs them)."""
    return lazy_import("spandrel.architectures.RealCUGAN.__arch.upcunet_v3")


def pad_once(x: torch.Tensor, prepadding: int, multiple: int) -> torch.Tensor:
    """Upstream's padding: ``prepadding`` on every side plus the alignment to ``multiple`` on the
    bottom and right, in one reflect (replicating where the image is too small to reflect)."""
    height, width = x.shape[-2:]
    bottom, right = prepadding + (-height % multiple), prepadding + (-width % multiple)
    mode = "reflect" if max(prepadding, bottom) < height and max(prepadding, right) < width else "replicate"
    return F.pad(x, (prepadding, right, prepadding, bottom), mode=mode)


class _Valid:
    """Mixin: the whole forward pass as upstream runs it, split into the padding (`pad_once`) and
    the part that consumes it (`forward_valid`), which the tiler calls on windows."""

    scale: int
    size_multiple: int
    prepadding: int  # context each side of a window that the valid convolutions consume
    unet1: nn.Module
    unet2: nn.Module

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)  # upstream's network, next in the made class's bases
        sync_se_blocks(self.se_blocks)

    @property
    def se_blocks(self) -> list[nn.Module]:
        """The squeeze-excitation blocks, in the order the forward pass reaches them."""
        return [self.unet1.conv2.seblock, self.unet2.conv2.seblock, self.unet2.conv3.seblock,
                self.unet2.conv4.seblock]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        out = self.forward_valid(pad_once(x, self.prepadding, self.size_multiple))
        return out[..., : height * self.scale, : width * self.scale]

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, h + 2p, w + 2p) -> (N, 3, h * scale, w * scale), for h and w multiples of
        `size_multiple` and p = `prepadding`: the network without its own padding."""
        state, feature = self.se_stages[0](x)
        for stage in self.se_stages[1:]:
            state, feature = stage(state, feature)
        return feature

    @property
    def se_stages(self) -> list:
        """`forward_valid` cut before each SE block (upstream's ``forward_a`` ... ``forward_d``): the
        first stage maps the window to (state, the first SE block's input); each next one applies
        the previous SE block to that input and goes on to the next (state, input); the last returns
        (None, the output). A synced tiled run keeps the states between passes (`esrgan.tiling.se_sync`)."""
        return [self._stage_unet1, self._stage_unet2_a, self._stage_unet2_b, self._stage_unet2_c, self._stage_out]

    def _stage_unet1(self, x: torch.Tensor):
        if self.pro is not None:
            x = x * PRO_SCALE + PRO_OFFSET
        p = self.prepadding
        x1, x2 = self.unet1.forward_a(x)
        return (x[..., p:-p, p:-p], x1), x2  # the core input: the 4x network adds it back

    def _stage_unet2_a(self, state, x2: torch.Tensor):
        core, x1 = state
        x = self.unet1.forward_b(x1, self.unet1.conv2.seblock(x2))
        y1, y2 = self.unet2.forward_a(x)
        return (core, x, y1), y2

    def _stage_unet2_b(self, state, y2: torch.Tensor):
        y2, y3 = self.unet2.forward_b(self.unet2.conv2.seblock(y2))
        return (*state, y2), y3

    def _stage_unet2_c(self, state, y3: torch.Tensor):
        core, x, y1, y2 = state
        return (core, x, y1), self.unet2.forward_c(y2, self.unet2.conv3.seblock(y3))

    def _stage_out(self, state, y4: torch.Tensor):
        core, x, y1 = state
        out = self._tail(self.unet2.forward_d(y1, self.unet2.conv4.seblock(y4)), x, core)
        if self.pro is not None:
            out = (out - PRO_OFFSET) / PRO_SCALE
        return None, out

    def _tail(self, z: torch.Tensor, x: torch.Tensor, core: torch.Tensor) -> torch.Tensor:
        return z + F.pad(x, (-UNET_CROP,) * 4)


class _Valid4x(_Valid):
    """The 4x network's tail: its last convolution and pixel shuffle, plus the nearest-upscaled input."""

    def _tail(self, z: torch.Tensor, x: torch.Tensor, core: torch.Tensor) -> torch.Tensor:
        x = self.ps(F.pad(self.conv_final(z + F.pad(x, (-UNET_CROP,) * 4)), (-1,) * 4))
        return x + F.interpolate(core, scale_factor=4, mode="nearest")


_DOCS = {name: f"Native {name[-2:]}. Keyword arguments: ``in_channels``, ``out_channels``, ``pro``."
         for name in ("UpCunet2x", "UpCunet3x", "UpCunet4x")}


_MAKING = threading.Lock()  # two threads' first use would make two sets of classes


def classes() -> dict[str, type]:
    """The networks (``UpCunet2x``, ``UpCunet3x``, ``UpCunet4x``: `_Valid` over upstream's classes)
    and ``SyncedSEBlock`` (upstream's SE block, same parameters and keys, taking its mean from
    `channel_mean`), made on first use (once, whichever threads ask); also reachable as this
    module's attributes of those names."""
    with _MAKING:
        return _made()


@cache
def _made() -> dict[str, type]:
    arch = upstream()

    class SyncedSEBlock(arch.SEBlock):
        """Upstream's SE block (same parameters, same keys) taking its mean from `channel_mean`."""

        __qualname__ = "SyncedSEBlock"  # found by pickle through the module's `__getattr__`

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x0 = channel_mean(self, x)
            x0 = torch.sigmoid(self.conv2(F.relu(self.conv1(x0))))
            return x * x0

    made: dict[str, type] = {"SyncedSEBlock": SyncedSEBlock}
    for scale in NETWORK_SCALES:
        name = f"UpCunet{scale}x"
        body = {"__doc__": _DOCS[name], "__module__": __name__, "scale": scale,
                "size_multiple": SIZE_MULTIPLES[scale], "prepadding": PREPADDINGS[scale]}
        made[name] = type(name, (_Valid4x if scale == 4 else _Valid, getattr(arch, name)), body)
    return made


def __getattr__(name: str) -> object:  # PEP 562: the spandrel-based classes, made when first named
    if name in ("UpCunet2x", "UpCunet3x", "UpCunet4x", "SyncedSEBlock"):
        return classes()[name]
    if name == "NETWORKS":
        return {scale: classes()[f"UpCunet{scale}x"] for scale in NETWORK_SCALES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sync_se_blocks(blocks: list[nn.Module]) -> None:
    """Make upstream SE blocks take their means through `channel_mean` (same parameters, same keys)."""
    synced = classes()["SyncedSEBlock"]
    for block in blocks:
        block.__class__ = synced


def RealCUGAN(*, scale: int, pro: bool = False, in_channels: int = 3, out_channels: int = 3) -> nn.Module:  # noqa: N802
    """The Real-CUGAN network of this native scale (2, 3 or 4); "pro" models have a ``pro`` buffer."""
    if scale not in NETWORK_SCALES:
        raise ValueError(f"Real-CUGAN exists at scales 2, 3 and 4, not {scale}")
    return classes()[f"UpCunet{scale}x"](in_channels=in_channels, out_channels=out_channels, pro=bool(pro))


# --- what the engine knows about Real-CUGAN (detection, ncnn layout, fine-tuning) ------------------
# Apart from the networks above on purpose, and without building them: the padding facts come from
# `SIZE_MULTIPLES`, so recognising a state dict imports no spandrel.

NAME = "cugan"
LEAKY_SLOPE = 0.1  # every LeakyReLU of upstream's UpCunet
SE_BLOCKS = 4  # squeeze-and-excitation blocks of every UpCunet (one global-average Pooling each)


def size_multiple(scale: int) -> int:
    """The alignment a tile needs at this native scale (the grid upstream pads the image to)."""
    return SIZE_MULTIPLES[scale]


def recognises(state: StateDict) -> bool:
    return "unet1.conv1.conv.0.weight" in state and "unet2.conv_bottom.weight" in state


def describe(state: StateDict) -> ModelDescriptor:
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
    return ModelDescriptor(NAME, scale, in_ch, out_ch, args, size_multiple(scale))


def freeze_rule(args: Mapping[str, int]) -> str:
    """The first U-Net: it restores, the second one refines."""
    return "unet1"


def ncnn_state_dict(layers: list[NcnnLayer], blobs: list[NcnnTensor], args: Mapping[str, int]) -> StateDict:
    """Map a Real-CUGAN graph's blobs onto upstream's key names, layer by layer in execution order.

    "pro" graphs convert like the others: the ncnn runtime (realcugan-ncnn-vulkan) feeds them exactly
    as it feeds "se" graphs, with no [0.15, 0.85] input mapping, so the converted network is a plain
    UpCunet without upstream's ``pro`` flag, and computes what that runtime computes.

    Upstream registers its modules in the order they run, so the n-th weighted ncnn layer is the n-th
    (weight, bias) pair of the PyTorch module; each pair is checked for kind (convolution, transposed
    convolution, the SE block's 1x1 convolutions stored as InnerProduct), shape and fused activation.

    Args:
        args: The catalogue's arguments; ``scale`` (2, 3 or 4) says which graph to expect.
    """
    scale = int(args.get("scale", 0))
    if scale not in NETWORK_SCALES:
        raise WeightsError(f"Real-CUGAN exists at scales 2, 3 and 4, not {scale}")
    network = RealCUGAN(scale=scale)
    reference = network.state_dict()
    names = [k[: -len(".weight")] for k in reference if k.endswith(".weight")]
    kinds = {name: "Deconvolution" if isinstance(module, nn.ConvTranspose2d)
             else "InnerProduct" if "seblock" in name else "Convolution"
             for name, module in network.named_modules() if name in names}
    if len(blobs) != len(names) or any(b.layer.kind not in WEIGHTED_LAYERS for b in blobs):
        raise WeightsError(f"{len(blobs)} weighted layers do not form a {scale}x Real-CUGAN ({len(names)})")
    if sum(layer.kind == "Pooling" for layer in layers) != SE_BLOCKS:
        raise WeightsError("a Real-CUGAN has four squeeze-and-excitation blocks; this graph does not")
    state: StateDict = {}
    for name, blob in zip(names, blobs, strict=True):
        weight = torch.from_numpy(blob.weight.copy())
        if blob.layer.kind == "Deconvolution":
            weight = weight.transpose(0, 1).contiguous()  # ncnn [out, in] -> ConvTranspose2d [in, out]
        expected = reference[f"{name}.weight"].shape
        if blob.layer.kind != kinds[name] or weight.shape != expected:
            raise WeightsError(f"layer {blob.layer.name} ({blob.layer.kind} {tuple(weight.shape)}) "
                               f"does not match {name} ({kinds[name]} {tuple(expected)})")
        fused = activation(blob.layer)
        if fused != unet_activation(name, last=OUTPUT_LAYER) or (
                fused == ACTIVATION_LEAKY_RELU and abs(leaky_slope(blob.layer, LEAKY_SLOPE) - LEAKY_SLOPE) > 1e-6):
            raise WeightsError(f"activation after {blob.layer.name} does not match {name}")
        if blob.bias is None:
            raise WeightsError(f"layer {blob.layer.name} has no bias; {name} does")
        state[f"{name}.weight"] = weight
        state[f"{name}.bias"] = torch.from_numpy(blob.bias.copy())
    if state.keys() != reference.keys():
        raise WeightsError("the converted Real-CUGAN lacks keys of the upstream network")
    return state


ARCHITECTURE = Architecture(
    name=NAME, family="Real-CUGAN", network=RealCUGAN, recognises=recognises, describe=describe,
    freeze_rule=freeze_rule, ncnn_state_dict=ncnn_state_dict,
)
