"""What tiles equal to the whole image cost for Real-CUGAN: the SE synchronisation modes side by side.

For each model, a real drawn image (tests/data/line_art.png, resized up) runs whole, then tiled with each
`TileOptions.se_sync` mode; each row prints the time (best of ``--rounds``), its ratio to the per-tile
mode ("tile": one pass) and to the whole image, and the PSNR of the tiled output to the whole image's
(fp32, 8-bit scale). Figures depend on the machine: say which when quoting them.

    python bench/se_sync.py [--size 256] [--tile 128] [--models realcugan-x2-denoise3x,realcugan-x4-no-denoise]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.models.store import ModelStore  # noqa: E402
from esrgan.tiling.plan import TileOptions, model_context, plan_for  # noqa: E402
from esrgan.tiling.run import upscale_tiled

IMAGE = ROOT / "tests" / "data" / "line_art.png"
MODES = ("tile", "exact")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def timed(run, rounds: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--models", default="realcugan-x2-denoise3x,realcugan-x4-no-denoise")
    args = parser.parse_args()
    with Image.open(IMAGE) as source:
        image = np.asarray(source.convert("RGB").resize((args.size, args.size), Image.BICUBIC), np.float32) / 255
    store = ModelStore()
    print(f"{args.size}x{args.size} px, {args.tile} px tiles, {torch.get_num_threads()} threads, fp32")
    for name in args.models.split(","):
        loaded = store.load(name, "cpu")
        scale, m = loaded.entry.scale, loaded.size_multiple
        whole_s, whole = timed(lambda: upscale_tiled(loaded.module, image, scale=scale, size_multiple=m,
                                                     options=TileOptions(tile=0)), args.rounds)
        print(f"{name}: whole image {whole_s:.2f} s")
        base = None
        for mode in MODES:
            options = TileOptions(tile=args.tile, se_sync=mode)
            tiles = plan_for(args.size, args.size, options, m, model_context(loaded.module)).count
            seconds, out = timed(lambda o=options: upscale_tiled(loaded.module, image, scale=scale, size_multiple=m,
                                                                 options=o), args.rounds)
            base = base or seconds
            print(f"  {mode:5s} {tiles} tiles {seconds:7.2f} s  x{seconds / base:.2f} of 'tile'  "
                  f"x{seconds / whole_s:.2f} of whole  {psnr(out, whole):6.1f} dB to the whole image", flush=True)


if __name__ == "__main__":
    main()
