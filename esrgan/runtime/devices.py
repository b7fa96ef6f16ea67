"""Which device the engine runs on: ``auto``, ``cpu``, ``cuda[:N]`` or ``vulkan[:N]``, and what exists here.

``auto`` prefers CUDA, then a real Vulkan GPU (through ncnn: `esrgan.runtime.ncnn_backend`), then the
CPU. A Vulkan driver that runs on the CPU (Mesa's lavapipe, ``llvmpipe``) is slower than the CPU path
itself, so ``auto`` never picks it; it can still be named (``vulkan:0``), which is how the Vulkan path
is tested on machines without a GPU. A device that does not exist gets one line naming those that do.
A Vulkan device is a ``torch.device("vulkan", N)`` to the engine; tensors never go there (the ncnn
network takes host tensors and uploads them itself).
"""

from __future__ import annotations

import re

import torch

from esrgan.errors import InvalidOptionError
from esrgan.runtime.ncnn_backend import VulkanDevice, vulkan_devices

VULKAN = "vulkan"
DEVICE_PATTERN = re.compile(r"^(cpu|cuda|vulkan)(?::(\d+))?$")
# Vulkan tiles: a window's activations are ~this many bytes per input pixel for the largest shipped
# graph (x4plus at 4x: 64 channels of fp16 at 4x the side, with ncnn's packing and the output), and a
# tile takes at most `VULKAN_HEAP_SHARE` of the device's heap budget.
VULKAN_BYTES_PER_PIXEL = 6 * 1024
VULKAN_HEAP_SHARE = 0.5
VULKAN_TILE_RANGE = (64, 512)


def available() -> list[str]:
    """Every device name this machine offers, described (``cpu``, ``cuda:0 (name)``, ``vulkan:0 (name)``)."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return names + [str(device) for device in vulkan_devices()]


def _unknown(asked: str, why: str) -> InvalidOptionError:
    return InvalidOptionError(f"device {asked!r} {why}; this machine has: {', '.join(available())}")


def resolve_device(device: str | None = None) -> torch.device:
    """The device a setting names; ``"auto"``/None: CUDA, else a Vulkan GPU (never a CPU driver), else the CPU.

    Raises:
        InvalidOptionError: An unknown device, or one this machine does not have (the message lists those it has).
    """
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        gpus = [d for d in vulkan_devices() if not d.cpu]
        return torch.device(VULKAN, gpus[0].index) if gpus else torch.device("cpu")
    match = DEVICE_PATTERN.match(device.strip().lower())
    if match is None:
        raise _unknown(device, "is not a device name (auto, cpu, cuda[:N] or vulkan[:N])")
    kind, index = match.group(1), int(match.group(2) or 0)
    if kind == "cuda":
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise _unknown(device, "is not here")
        return torch.device("cuda", index)
    if kind == VULKAN:
        if vulkan_device(index) is None:
            raise _unknown(device, "is not here")
        return torch.device(VULKAN, index)
    return torch.device("cpu")


def vulkan_device(index: int) -> VulkanDevice | None:
    """The Vulkan device of this index, or None."""
    return next((d for d in vulkan_devices() if d.index == index), None)


def describe(device: torch.device) -> str:
    """The device as "Made with" and the listings show it (``vulkan:0 (llvmpipe ...)``, ``cuda:0``, ``cpu``)."""
    if device.type == VULKAN:
        found = vulkan_device(device.index or 0)
        return str(found) if found is not None else f"vulkan:{device.index or 0}"
    return str(device)


def vulkan_tile(device: torch.device, context: int) -> int:
    """The tile side (input pixels) for a Vulkan device, from its heap budget: a window of tile + 2 *
    ``context`` takes at most `VULKAN_HEAP_SHARE` of it (out of memory still halves: `esrgan.tiling.run`)."""
    found = vulkan_device(device.index or 0)
    budget = (found.heap_budget_mb if found is not None else 256) * 2**20 * VULKAN_HEAP_SHARE
    side = int((budget / VULKAN_BYTES_PER_PIXEL) ** 0.5) - 2 * context
    low, high = VULKAN_TILE_RANGE
    return max(low, min(high, side // 32 * 32))
