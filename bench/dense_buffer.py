"""The RRDB dense-block feature buffer against concatenation, timed so that a busy machine cannot fake it.

x4plus on a random (1, 3, side, side) input, for each precision and layout the CPU runs natively:
today's concatenating blocks ("cat") against the feature buffer ("buffer"), in interleaved ABBA
rounds, one thread. Two clocks: wall time (what a user waits; inflated by other processes) and
the process's CPU time (with one thread, the seconds the convolutions really ran; other processes
barely move it). Best of the rounds for each. Where `feature_buffer_pays` declines a setting
(channels-last, bf16), both run the same code: their ratio is the measurement's own noise, a control.

    python bench/dense_buffer.py [--sizes 64,128] [--rounds 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speed import concatenating  # noqa: E402  (bench/ is this script's folder)

from esrgan.archs.rrdbnet import feature_buffer_pays  # noqa: E402
from esrgan.models.store import ModelStore  # noqa: E402
from esrgan.runtime.choose import native_bf16  # noqa: E402

MODEL = "realesrgan-x4plus"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)


def compare(store: ModelStore, side: int, rounds: int, dtype: torch.dtype, channels_last: bool) -> str:
    buffered = store.load(MODEL, "cpu", dtype, channels_last).module
    nets = {"cat": concatenating(buffered), "buffer": buffered}
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(dtype).contiguous(
        memory_format=layout)
    wall = dict.fromkeys(nets, math.inf)
    cpu = dict.fromkeys(nets, math.inf)
    outputs = {}
    with torch.inference_mode():
        for net in nets.values():
            net(x[..., :16, :16])  # oneDNN primitives made, untimed
        for index in range(rounds):
            for name in list(nets) if index % 2 == 0 else list(nets)[::-1]:
                started, used = time.perf_counter(), time.process_time()
                outputs[name] = nets[name](x)
                wall[name] = min(wall[name], time.perf_counter() - started)
                cpu[name] = min(cpu[name], time.process_time() - used)
        probe = torch.empty(1, 64, 2, 2, dtype=dtype).contiguous(memory_format=layout)
        taken = feature_buffer_pays(probe, buffered.conv_first.weight)
    kind = "buffer" if taken else "cat (control: same code)"
    return (f"| {side} | {str(dtype).split('.')[-1]} | {'channels-last' if channels_last else 'NCHW'} | {kind} | "
            f"{wall['cat']:.3f} | {wall['buffer']:.3f} | {wall['cat'] / wall['buffer']:.3f}x | {cpu['cat']:.3f} | "
            f"{cpu['buffer']:.3f} | {cpu['cat'] / cpu['buffer']:.3f}x | {psnr(outputs['cat'], outputs['buffer'])} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, {args.threads} thread(s), "
          f"CPU kernels {torch.backends.cpu.get_cpu_capability()}, load average {load:.1f} on {os.cpu_count()} CPUs")
    dtypes = (torch.float32, torch.bfloat16) if native_bf16()[0] else (torch.float32,)
    store = ModelStore()
    print(f"\n{MODEL}, best of {args.rounds} interleaved rounds (seconds):\n")
    print("| size | dtype | layout | path taken | wall cat | wall buffer | wall ratio | CPU cat | CPU buffer | "
          "CPU ratio | PSNR buffer to cat (dB) |")
    print("| --- " * 11 + "|")
    for side in (int(v) for v in args.sizes.split(",")):
        for dtype in dtypes:
            for channels_last in (False, True):
                print(compare(store, side, args.rounds, dtype, channels_last), flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
