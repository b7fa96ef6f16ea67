"""The dense blocks' feature-buffer path gives today's outputs, and is taken only where it is safe."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from esrgan.archs.rrdbnet import ResidualDenseBlock, RRDBNet
from esrgan.io.imageio import read_image
from tests.conftest import dataset_image
from tests.conftest import psnr as psnr_arrays

MIN_PSNR_DB = 100.0  # the feature buffer must not change the result


def concatenating(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` whose dense blocks always concatenate (the path before the buffer)."""
    twin = copy.deepcopy(net)
    for module in twin.modules():
        if isinstance(module, ResidualDenseBlock):
            module.feature_buffer = False
    return twin


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return psnr_arrays(a.numpy(), b.numpy())


def buffered_calls(net: torch.nn.Module, x: torch.Tensor) -> int:
    """How many dense blocks took the buffered path in one forward pass."""
    calls = 0
    original = ResidualDenseBlock._forward_buffered

    def counting(self, features):
        nonlocal calls
        calls += 1
        return original(self, features)

    ResidualDenseBlock._forward_buffered = counting
    try:
        net(x)
    finally:
        ResidualDenseBlock._forward_buffered = original
    return calls


def tiny(scale: int, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(scale=scale, num_feat=8, num_block=2, num_grow_ch=4).eval()


@pytest.mark.parametrize(("scale", "height", "width"), [(4, 13, 7), (4, 1, 9), (2, 10, 6), (1, 12, 4), (8, 5, 3)])
def test_tiny_network_gives_the_same_output_with_the_buffer(scale, height, width):
    net = tiny(scale)
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = concatenating(net)(x)
        got = net(x)
        assert buffered_calls(net, x) == 2 * 3  # every dense block of both RRDBs
    assert got.shape == expected.shape == (1, 3, height * scale, width * scale)
    assert psnr(got, expected) >= MIN_PSNR_DB


def test_channels_last_batches_and_bf16_keep_concatenating():
    net = tiny(4)
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert buffered_calls(net, x) == 0  # a batch: the channel prefix is strided
        assert buffered_calls(net, x[:1].contiguous(memory_format=torch.channels_last)) == 0
        assert buffered_calls(copy.deepcopy(net).bfloat16(), x[:1].bfloat16()) == 0
        net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
        cl = net_cl(x[:1].contiguous(memory_format=torch.channels_last))
        assert psnr(cl, concatenating(net)(x[:1])) >= MIN_PSNR_DB


def test_training_concatenates_and_backpropagates():
    net = tiny(4).train()
    x = torch.rand(1, 3, 7, 5, generator=torch.Generator().manual_seed(3))
    assert buffered_calls(net, x) == 0
    net(x).mean().backward()  # the in-place slice writes would break autograd
    assert net.body[0].rdb1.conv3.weight.grad is not None
    with torch.no_grad():  # frozen weights, no grad mode: the buffer again
        assert buffered_calls(net, x) == 6


def test_real_x4plus_on_a_photo_crop_is_unchanged(store):
    net = store.load("realesrgan-x4plus", "cpu", torch.float32, channels_last=False).module
    photo = read_image(dataset_image("Set5_LRx4/babyx4.png")).pixels[21:40, 30:45]  # 19x15
    x = torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        expected = concatenating(net)(x)
        got = net(x)
    assert psnr(got.clamp(0, 1), expected.clamp(0, 1)) >= MIN_PSNR_DB
    assert psnr(got, expected) >= MIN_PSNR_DB
