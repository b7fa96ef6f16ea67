"""DAT-light's quality row: Set5 and Set14, bicubic x2 and x4, PSNR-Y and SSIM-Y beside the paper's.

LR images are made from the HR ones with MATLAB's bicubic (`esrgan.quality.resize.imresize`), as the
paper's were; the results come from the engine (`Upscaler`, fp32, whole images: every LR here is
under `DAT_WHOLE_PIXELS`), border shaved by the scale, Y of BT.601 (`esrgan.quality.metrics.quality`).

    PYTHONPATH=. python bench/dat_quality.py [--sets Set5,Set14] [--scales 2,4] [--datasets DIR]

The paper's figures: Chen et al., "Dual Aggregation Transformer for Image Super-Resolution", ICCV
2023, Table 3 (lightweight image SR), row DAT-light.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from esrgan.cli.env import engine_settings
from esrgan.io.imageio import read_image
from esrgan.pipeline import Upscaler
from esrgan.quality.metrics import mod_crop, quality
from esrgan.quality.resize import imresize

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("REMASTER_DATASETS", ROOT.parent / "shared" / "datasets"))
# (set, scale) -> (PSNR-Y, SSIM-Y) of DAT-light in the paper's Table 3
PAPER = {("Set5", 2): (38.24, 0.9614), ("Set14", 2): (34.01, 0.9214),
         ("Set5", 4): (32.57, 0.8991), ("Set14", 4): (28.87, 0.7879)}


def evaluate(upscaler: Upscaler, folder: Path, scale: int) -> tuple[float, float, float]:
    """Mean PSNR-Y, SSIM-Y and seconds per image of ``dat-light-x{scale}`` over a folder of HR images."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted(folder.glob("*.png")):
            hr = mod_crop(np.asarray(Image.open(path).convert("RGB")), scale)
            lr = np.clip(np.round(imresize(hr.astype(np.float64), 1 / scale)), 0, 255).astype(np.uint8)
            lr_path = Path(scratch) / path.name
            Image.fromarray(lr).save(lr_path)
            started = time.perf_counter()
            result = upscaler.upscale(read_image(lr_path), scale, model=f"dat-light-x{scale}", float_result=True)
            seconds = time.perf_counter() - started
            sr = np.clip(np.round(result.image.rgb() * 255), 0, 255).astype(np.uint8)
            scores = quality(sr, hr, scale)
            print(f"  {path.name:16} {scores['psnr_y']:.2f} dB {scores['ssim_y']:.4f} ({seconds:.0f} s)", flush=True)
            rows.append((scores["psnr_y"], scores["ssim_y"], seconds))
    return tuple(float(np.mean([row[i] for row in rows])) for i in range(3))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="Set5,Set14")
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    args = parser.parse_args()
    upscaler = Upscaler(None, engine_settings(precision="fp32", device="cpu"))
    print(f"load {os.getloadavg()[0]:.1f}; | set | scale | PSNR-Y | SSIM-Y | paper (Table 3) | difference |")
    for scale in (int(s) for s in args.scales.split(",")):
        for name in args.sets.split(","):
            psnr_y, ssim_y, seconds = evaluate(upscaler, args.datasets / name, scale)
            paper = PAPER.get((name, scale))
            against = f"{paper[0]:.2f} / {paper[1]:.4f} | {psnr_y - paper[0]:+.2f} dB" if paper else "- | -"
            print(f"| {name} | x{scale} | {psnr_y:.2f} | {ssim_y:.4f} | {against} | ({seconds:.0f} s per image)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
