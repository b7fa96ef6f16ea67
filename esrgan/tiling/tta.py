"""Test-time augmentation (TTA): a network run on the 8 flips and transposes of its input, outputs averaged.

As realcugan-ncnn-vulkan's and waifu2x-ncnn-vulkan's ``-x``: each of the 8 symmetries of the square
(the dihedral group: identity, the two flips, the transpose and their combinations) is applied to
the input, the network runs on it, the inverse symmetry is applied to its output, and the 8 outputs
are averaged (summed in float32, whatever the network's dtype). It costs 8 forward passes, so about
8x the time; the gain is measured in the README ("Test-time augmentation").

`with_tta` wraps any network (`TTA`, an ``nn.Module`` with the network's contract:
(N, C, H, W) -> (N, C, H*s, W*s), any H and W the network takes, square or not). A network that
consumes its own context (``forward_valid`` and ``prepadding``: Real-CUGAN, waifu2x) gets a wrapper
with those too (`TTAValid`), so a tiler that pads the image once and runs ``forward_valid`` on
windows averages the symmetries of each padded window, as the ncnn runtimes do per tile.
The wrapper only calls the network; the network's attributes a tiler reads (``scale``,
``size_multiple``, ``prepadding``, ``border``, ``se_blocks``) are read through it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

TRANSFORMS = 8
# The attributes of the wrapped network a tiler or a loader reads; looked up on it, not copied.
DELEGATED = ("scale", "size_multiple", "prepadding", "border", "se_blocks")


def passes_for(tta: bool) -> int:
    """Forward passes per tile: `TRANSFORMS` with TTA, else 1 (the factor of its time and estimate)."""
    return TRANSFORMS if tta else 1


def transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th symmetry (0 <= k < 8) of (N, C, H, W) images: bit 0 flips H, bit 1 flips W, bit 2
    transposes H and W (last)."""
    dims = [d for bit, d in ((1, -2), (2, -1)) if k & bit]
    out = torch.flip(x, dims) if dims else x
    return out.transpose(-2, -1) if k & 4 else out


def inverse(y: torch.Tensor, k: int) -> torch.Tensor:
    """Undo `transform` (k) on an output: transpose back first, then flip the same axes."""
    out = y.transpose(-2, -1) if k & 4 else y
    dims = [d for bit, d in ((1, -2), (2, -1)) if k & bit]
    return torch.flip(out, dims) if dims else out


def averaged(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean over the 8 symmetries of ``inverse(run(transform(x, k)), k)``, summed in float32 in
    the order k = 0..7, returned in the dtype ``run`` gives."""
    total: torch.Tensor | None = None
    dtype = x.dtype
    for k in range(TRANSFORMS):
        out = inverse(run(transform(x, k)), k)
        dtype = out.dtype
        total = out.float() if total is None else total.add_(out.float())
    assert total is not None
    return total.div_(TRANSFORMS).to(dtype)


class TTA(nn.Module):
    """A network whose forward pass averages its 8 symmetric runs (see the module docstring).

    Args:
        network: Any image-to-image network, (N, C, H, W) -> (N, C, H*s, W*s).
    """

    passes = TRANSFORMS  # runs of ``network`` per forward pass (`esrgan.tiling.steps` counts each run's blocks)

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return averaged(self.network, x)

    def __getattr__(self, name: str):
        if name in DELEGATED:
            return getattr(self._modules["network"], name)
        return super().__getattr__(name)


class TTAValid(TTA):
    """`TTA` of a network that consumes its context: ``forward_valid`` averages too."""

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h + 2p, w + 2p) -> (N, C, h*s, w*s): the 8 symmetries of a padded window."""
        return averaged(self.network.forward_valid, x)


def with_tta(network: nn.Module) -> TTA:
    """``network`` wrapped for test-time augmentation (`TTAValid` when it has a ``forward_valid``)."""
    return TTAValid(network) if hasattr(network, "forward_valid") else TTA(network)
