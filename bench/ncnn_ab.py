"""The ncnn backend against torch fp32 through the command line, end to end, in one run (A B A B).

Each round runs ``python -m esrgan upscale in.png -s 4 --device cpu --fp32`` once with torch
(channels-last, the fp32 path) and once with ``--backend ncnn`` (the shipped graph, Winograd), in
turns, after one untimed run of each (conversion, kernels, page cache). Prints each run's seconds,
whole process and the run's own (what the CLI reports: the image's upscaling, without the process's
start, imports and model load, which both backends pay alike), the best of each, their ratios and
the PSNR of the two 8-bit results; and the load before and after, since other processes only ever
add time.

    python bench/ncnn_ab.py [--side 256] [--rounds 2] [--model realesrgan-x4plus] [--image tests/data/astronaut.png]
                            [--tile N ...]   (more arms: ncnn with ``--tile N``, e.g. --tile 384 to pin the old size)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = {"torch fp32 (channels-last)": "torch-cl", "ncnn fp32 (Winograd)": "ncnn"}


def psnr_8bit(a: Path, b: Path) -> float:
    x = np.asarray(Image.open(a).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(b).convert("RGB"), dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def run(source: Path, out: Path, arm: str, model: str) -> tuple[float, float]:
    """(seconds of the whole process, seconds of the run as the CLI reports them)."""
    backend, _, tile = arm.partition(":")
    command = [sys.executable, "-m", "esrgan", "upscale", str(source), "-s", "4", "--device", "cpu", "--fp32",
               "--backend", backend, "--model", model, "-o", str(out), *(["--tile", tile] if tile else [])]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    whole = time.perf_counter() - started
    return whole, float(re.findall(r", ([0-9.]+)s\)$", done.stdout.strip())[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="realesrgan-x4plus")
    parser.add_argument("--image", default=str(ROOT / "tests" / "data" / "astronaut.png"))
    parser.add_argument("--tile", type=int, action="append", default=[], help="an ncnn arm with this --tile")
    args = parser.parse_args()
    arms = {**BACKENDS, **{f"ncnn fp32 (--tile {tile})": f"ncnn:{tile}" for tile in args.tile}}
    folder = Path(tempfile.mkdtemp(prefix="ncnn-ab-"))
    source = folder / "in.png"
    with Image.open(args.image) as image:
        image.convert("RGB").crop((0, 0, args.side, args.side)).save(source)
    print(f"# load before: {os.getloadavg()}; {args.model} 4x on a {args.side}x{args.side} crop, {args.rounds} rounds")
    outputs = {label: folder / f"{arm.replace(':', '-')}.png" for label, arm in arms.items()}
    for label, arm in arms.items():  # untimed: conversion, kernels, page cache
        run(source, outputs[label], arm, args.model)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in arms}
    for index in range(args.rounds):
        order = list(arms) if index % 2 == 0 else list(arms)[::-1]
        for label in order:
            times[label].append(run(source, outputs[label], arms[label], args.model))
            whole, own = times[label][-1]
            print(f"# round {index + 1} {label}: {whole:.2f} s, the run {own:.1f} s", flush=True)
    torch_label = next(iter(BACKENDS))
    best = {label: min(t[0] for t in values) for label, values in times.items()}
    own = {label: min(t[1] for t in values) for label, values in times.items()}
    print(f"# load after: {os.getloadavg()}")
    for label in arms:
        print(f"{label}: best {best[label]:.2f} s of {', '.join(f'{t[0]:.2f}' for t in times[label])}; "
              f"the run {own[label]:.1f} s")
    for label in list(arms)[1:]:
        print(f"{label} / torch time: {best[label] / best[torch_label]:.3f}x whole, "
              f"{own[label] / own[torch_label]:.3f}x the run; "
              f"PSNR of the 8-bit results: {psnr_8bit(outputs[label], outputs[torch_label]):.1f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
