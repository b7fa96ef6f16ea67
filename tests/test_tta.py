"""Test-time augmentation: the wrapper's output is the mean of the network's 8 symmetric runs, at any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from esrgan.archs import RRDBNet, SRVGGNetCompact
from esrgan.archs.waifu2x import CUNet, UpConv7
from esrgan.tiling.plan import TileOptions
from esrgan.tiling.run import upscale_tiled
from esrgan.tiling.tta import TTA, TTAValid, inverse, transform, with_tta

# The 8 symmetries of the square, written out one by one (numpy axes of an (H, W) plane): the
# reference the wrapper is checked against, independent of `transform`'s bit arithmetic.
SYMMETRIES = [
    (lambda a: a, lambda a: a),
    (lambda a: a[::-1], lambda a: a[::-1]),
    (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
    (lambda a: a[::-1, ::-1], lambda a: a[::-1, ::-1]),
    (lambda a: a.T, lambda a: a.T),
    (lambda a: a[::-1].T, lambda a: a.T[::-1]),
    (lambda a: a[:, ::-1].T, lambda a: a.T[:, ::-1]),
    (lambda a: a[::-1, ::-1].T, lambda a: a.T[::-1, ::-1]),
]


def planes(function, x: torch.Tensor) -> torch.Tensor:
    """Apply an (H, W) numpy function to every plane of (N, C, H, W)."""
    array = x.numpy()
    out = [[np.ascontiguousarray(function(array[n, c])) for c in range(array.shape[1])] for n in range(array.shape[0])]
    return torch.from_numpy(np.array(out))


def reference_mean(network: nn.Module, x: torch.Tensor, run=None) -> torch.Tensor:
    run = run or network
    outputs = [planes(back, run(planes(there, x))) for there, back in SYMMETRIES]
    return torch.stack(outputs).double().mean(0).float()


@pytest.fixture(scope="module")
def tiny_networks() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"rrdbnet": RRDBNet(num_block=1, num_feat=4, num_grow_ch=4, scale=4).eval(),
            "srvgg": SRVGGNetCompact(num_feat=8, num_conv=2, upscale=3).eval()}


@pytest.mark.parametrize(("name", "height", "width"), [("srvgg", 13, 21), ("srvgg", 21, 13), ("srvgg", 1, 5),
                                                       ("rrdbnet", 7, 9)])
def test_tta_is_the_mean_of_the_eight_symmetric_runs(tiny_networks, name, height, width):
    network = tiny_networks[name]
    x = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    with torch.inference_mode():
        ours = with_tta(network)(x)
        expected = reference_mean(network, x)
    scale = 4 if name == "rrdbnet" else 3
    assert ours.shape == (2, 3, height * scale, width * scale)
    torch.testing.assert_close(ours, expected, rtol=0, atol=2e-6)
    assert not torch.allclose(ours, network(x), atol=1e-4)  # the symmetries did change something


def test_the_eight_symmetries_are_distinct_and_undone_by_their_inverse():
    x = torch.rand(1, 1, 3, 5)
    seen = set()
    for k, (there, _) in enumerate(SYMMETRIES):
        moved = transform(x, k)
        torch.testing.assert_close(moved, planes(there, x), rtol=0, atol=0)
        torch.testing.assert_close(inverse(moved, k), x, rtol=0, atol=0)
        seen.add(tuple(moved.flatten().tolist()))
    assert len(seen) == 8


def test_an_equivariant_network_is_unchanged_and_the_dtype_is_kept():
    upsample = nn.Upsample(scale_factor=2, mode="nearest")
    x = torch.rand(1, 3, 9, 4)
    torch.testing.assert_close(TTA(upsample)(x), upsample(x), rtol=0, atol=3e-7)  # the sum of 8, rounded
    half = TTA(upsample)(x.bfloat16())
    assert half.dtype == torch.bfloat16


def test_a_network_that_pads_itself_keeps_its_facts_and_its_valid_pass():
    cunet = CUNet()
    wrapped = with_tta(cunet)
    assert isinstance(wrapped, TTAValid) and not isinstance(with_tta(RRDBNet(num_block=1, num_feat=8)), TTAValid)
    assert (wrapped.scale, wrapped.size_multiple, wrapped.prepadding, wrapped.border) == (1, 4, 28, "replicate")
    assert wrapped.se_blocks == cunet.se_blocks and not hasattr(with_tta(UpConv7()), "se_blocks")
    network = UpConv7().eval()
    wrapped = with_tta(network)
    x = torch.rand(1, 3, 5 + 14, 8 + 14)  # a core of 5x8 with the network's context
    with torch.inference_mode():
        torch.testing.assert_close(wrapped.forward_valid(x), reference_mean(network, x, network.forward_valid),
                                   rtol=0, atol=2e-6)
    assert wrapped.forward_valid(x).shape[-2:] == (10, 16)
    assert list(wrapped.state_dict()) == [f"network.{k}" for k in network.state_dict()]


def test_tiled_runs_take_the_wrapper_at_odd_sizes(tiny_networks):
    network = tiny_networks["srvgg"]
    image = np.random.default_rng(3).random((37, 23, 3), dtype=np.float32)
    whole = upscale_tiled(with_tta(network), image, scale=3, options=TileOptions(tile=0))
    tiled = upscale_tiled(with_tta(network), image, scale=3, options=TileOptions(tile=16, tile_pad=8))
    with torch.inference_mode():
        expected = reference_mean(network, torch.from_numpy(image.transpose(2, 0, 1).copy())[None])
    expected = expected[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(whole, expected, rtol=0, atol=2e-6)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)  # 8 px of context covers its 4 convolutions
