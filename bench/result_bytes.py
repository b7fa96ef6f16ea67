"""The result as bytes (issue 22): peak RSS and time of `Upscaler.upscale` + PNG `encode` with the
float32 result (``float_result=True``, the path before) against the uint8 result made where the
network ran, in one process, interleaved; and whether the two PNG files are the same bytes.

    python bench/result_bytes.py [--side 1024] [--model realesr-animevideov3] [--rounds 2] [--precision bf16]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.speed import crop, peak_rss_mb, reset_peak_rss  # noqa: E402
from esrgan.io.imageio import DecodedImage, encode  # noqa: E402
from esrgan.models.store import ModelStore  # noqa: E402
from esrgan.pipeline import Upscaler  # noqa: E402
from esrgan.settings import Settings  # noqa: E402


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(upscaler: Upscaler, image: DecodedImage, model: str, scale: int, float_result: bool):
    gc.collect()
    base = current_rss_mb()
    reset_peak_rss()
    started = time.perf_counter()
    result = upscaler.upscale(image, scale, model=model, float_result=float_result)
    upscaled = time.perf_counter() - started
    data = encode(result.image, "png")
    total = time.perf_counter() - started
    return upscaled, total, peak_rss_mb() - base, data, result.provenance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--model", default="realesr-animevideov3")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    upscaler = Upscaler(ModelStore(), Settings(device=args.device, precision=args.precision))
    image = DecodedImage(crop(args.side))
    upscaler.upscale(DecodedImage(crop(64)), args.scale, model=args.model)  # loads the model
    rows: dict[str, list] = {"float32 result": [], "uint8 result": []}
    files: dict[str, bytes] = {}
    for _ in range(args.rounds):
        for label, float_result in (("float32 result", True), ("uint8 result", False)):
            upscaled, total, peak, data, provenance = one_run(upscaler, image, args.model, args.scale, float_result)
            rows[label].append((upscaled, total, peak))
            files[label] = data
    print(f"{args.side}x{args.side} at {args.scale}x with {args.model} ({provenance.precision}, {provenance.device}, "
          f"{provenance.tiles} tiles of {provenance.tile} px), best of {args.rounds}, interleaved:\n")
    print("| result | upscale s (each round) | upscale + PNG encode s (best) | peak RSS above the start MB "
          "(each round) |")
    print("| --- | --- | --- | --- |")
    for label, runs in rows.items():
        print(f"| {label} | {' / '.join(f'{r[0]:.2f}' for r in runs)} | {min(r[1] for r in runs):.2f} | "
              f"{' / '.join(f'{r[2]:.0f}' for r in runs)} |")
    same = files["float32 result"] == files["uint8 result"]
    print(f"\nPNG files identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
