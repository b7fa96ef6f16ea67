"""oneDNN's prepacked weight layouts (and a fused LeakyReLU) against the eager convolutions, on x4plus.

Eager `torch.nn.Conv2d` hands oneDNN its weights in PyTorch's layout, and oneDNN reorders them into
its blocked layout at every call (`ONEDNN_VERBOSE=1` shows one `reorder` beside each convolution).
Here each convolution's weights are reordered once, for the input shape it will see, and the
network calls `torch.ops.mkldnn._convolution_pointwise` with them, as inductor's freezing pass does
on a CPU. "fused" also lets oneDNN apply the dense blocks' LeakyReLU as a post-op of conv1-4.

For each precision this CPU runs natively (channels-last, as the default path runs), in
interleaved ABC rounds, one thread: wall and CPU seconds (with one thread the process's CPU
seconds are the work done; other processes barely move them), best of the rounds, and the PSNR
of each output to the eager one. Not the product: a measurement of what the idea could give.

    python bench/prepack.py [--sizes 64,128,256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.archs.rrdbnet import LEAKY_SLOPE, RESIDUAL_SCALE, ResidualDenseBlock  # noqa: E402
from esrgan.models.store import ModelStore  # noqa: E402
from esrgan.runtime.choose import native_bf16  # noqa: E402

MODEL = "realesrgan-x4plus"


class PackedConv(nn.Module):
    """A 3x3 convolution with its weights in oneDNN's layout for one input shape; ``leaky``:
    LeakyReLU applied by oneDNN as a post-op."""

    def __init__(self, conv: nn.Conv2d, input_size: list[int], leaky: bool = False) -> None:
        super().__init__()
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.packed = torch.ops.mkldnn._reorder_convolution_weight(conv.weight.detach(), *self.args, input_size)
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.attr, self.scalars = ("leaky_relu", [LEAKY_SLOPE]) if leaky else ("none", [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias, *self.args, self.attr,
                                                       self.scalars, "")


class PackedDenseBlock(nn.Module):
    """A dense block of packed convolutions, concatenating as the eager channels-last path does;
    ``fused``: conv1-4 apply their own LeakyReLU (packed with ``leaky=True``)."""

    def __init__(self, block: ResidualDenseBlock, fused: bool) -> None:
        super().__init__()
        self.convs, self.fused = [block.conv1, block.conv2, block.conv3, block.conv4, block.conv5], fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs[:4]:
            out = conv(torch.cat(features, 1))
            features.append(out if self.fused else F.leaky_relu(out, LEAKY_SLOPE, inplace=True))
        return self.convs[4](torch.cat(features, 1)) * RESIDUAL_SCALE + x


def packed(module: nn.Module, x: torch.Tensor, fuse: bool) -> nn.Module:
    """A copy of ``module`` with every convolution prepacked for the shapes a run on ``x`` feeds it."""
    module = copy.deepcopy(module)
    shapes: dict[str, list[int]] = {}
    hooks = [m.register_forward_pre_hook(lambda _, args, name=name: shapes.__setitem__(name, list(args[0].shape)))
             for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        module(x)
    for hook in hooks:
        hook.remove()
    for name, shape in shapes.items():
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name)
        leaky = fuse and isinstance(parent, ResidualDenseBlock) and leaf != "conv5"
        setattr(parent, leaf, PackedConv(getattr(parent, leaf), shape, leaky))
    for name, block in list(module.named_modules()):
        if isinstance(block, ResidualDenseBlock):
            parent_name, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent_name), leaf, PackedDenseBlock(block, fuse))
    return module


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double().clamp(0, 1) - b.double().clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)


def compare(store: ModelStore, side: int, rounds: int, dtype: torch.dtype) -> list[str]:
    eager = store.load(MODEL, "cpu", dtype, True).module
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    nets = {"eager": eager, "prepacked": packed(eager, x, False), "prepacked + fused LeakyReLU": packed(eager, x, True)}
    wall, cpu, outputs = dict.fromkeys(nets, math.inf), dict.fromkeys(nets, math.inf), {}
    with torch.inference_mode():
        for net in nets.values():
            net(x)  # oneDNN primitives made, untimed
        for index in range(rounds):
            order = list(nets) if index % 2 == 0 else list(nets)[::-1]
            for name in order:
                started, used = time.perf_counter(), time.process_time()
                outputs[name] = nets[name](x)
                wall[name] = min(wall[name], time.perf_counter() - started)
                cpu[name] = min(cpu[name], time.process_time() - used)
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    return [f"| {side} | {precision} | {name} | {wall[name]:.3f} | {cpu[name]:.3f} | "
            f"{cpu['eager'] / cpu[name]:.3f}x | {psnr(outputs[name], outputs['eager']):.1f} dB |" for name in nets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtypes = [torch.float32] + ([torch.bfloat16] if native_bf16()[0] else [])
    print(f"# {MODEL}, channels-last, 1 thread, best of {args.rounds} interleaved rounds; torch {torch.__version__}; "
          f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '-')}; load {os.getloadavg()[0]:.1f}\n")
    print("| px | precision | convolutions | wall s | CPU s | CPU speed-up | PSNR to eager |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    store = ModelStore(ROOT / "weights")
    for side in (int(s) for s in args.sizes.split(",")):
        for dtype in dtypes:
            print("\n".join(compare(store, side, args.rounds, dtype)), flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
