"""The README's anime table: every available anime model (each noise level) against bicubic, with NIQE.

Images: Set14 ``comic`` (whole) and a 288 x 288 crop of ``ppt3`` (the title and the globe), the
anime-like pictures we have. Every anime model the store can run takes part (Real-ESRGAN anime,
animevideo v3 and, where installed, every Real-CUGAN variant), each at its native scale, so no
resample step muddies the comparison; bicubic (MATLAB) is the baseline at every scale. LR inputs
are made by MATLAB bicubic downscaling (clean) and by the seeded Real-ESRGAN degradation (blur,
noise, JPEG: where noise reduction matters). PSNR/SSIM on Y with the border shaved; NIQE with the
same border cropped; the ground truth's own NIQE is printed as a bound.

    python bench/anime_table.py [--out bench/results/anime] [--docs docs] [--degradations bicubic,realistic]
                                [--scales 4]

With the 19 anime models of the Real-CUGAN merge it takes about 6 minutes on the 2-core EPYC: split
it (``--scales 4``, then ``--scales 2,3``) to keep each run near 3.

Prints one markdown table per (scale, degradation) with the machine; writes a crop grid per table
to OUT and the 4x ones, as small JPEGs, to DOCS.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.io.imageio import read_image  # noqa: E402
from esrgan.models import registry  # noqa: E402
from esrgan.models.store import ModelStore  # noqa: E402
from esrgan.pipeline import Upscaler  # noqa: E402
from esrgan.quality.evaluate import build_methods, evaluate, to_uint8  # noqa: E402
from esrgan.quality.metrics import mod_crop  # noqa: E402
from esrgan.quality.niqe import NIQEError, niqe  # noqa: E402
from esrgan.quality.report import Crops, crop_grid  # noqa: E402
from esrgan.settings import Settings  # noqa: E402

DATASETS = Path(os.environ.get("REMASTER_DATASETS", ROOT.parent / "shared" / "datasets"))
IMAGES = {"comic.png": None, "ppt3.png": (216, 24, 504, 312)}  # Set14 name: PIL crop box or whole
JPEG_QUALITY = 85


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def anime_models(store: ModelStore) -> dict[str, tuple[int, str]]:
    """Available anime models: name -> (native scale, noise level or "-")."""
    found = {}
    for name, entry in store.entries().items():
        try:
            spec = registry.spec(name)
        except Exception:  # a user checkpoint: not part of the shipped comparison
            continue
        if entry.anime or getattr(spec, "family", "") == "Real-CUGAN":
            found[name] = (entry.scale, getattr(spec, "noise", None) or "-")
    return found


def hr_images(folder: Path) -> None:
    for name, box in IMAGES.items():
        image = Image.open(DATASETS / "Set14" / name).convert("RGB")
        (image.crop(box) if box else image).save(folder / name)


def ground_truth_niqe(folder: Path, scale: int) -> float:
    values = []
    for path in sorted(folder.iterdir()):
        hr = mod_crop(to_uint8(read_image(path, max_pixels=None).pixels), scale)
        try:
            values.append(niqe(hr, crop_border=scale))
        except NIQEError:
            pass
    return float(np.mean(values))


def table(result, models: dict[str, tuple[int, str]], hr_niqe: float) -> str:
    lines = ["| method | noise | PSNR-Y (dB) | SSIM-Y | NIQE (lower is better) | s / image |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in result.summary():
        noise = models.get(r["method"], (0, "-"))[1]
        niqe_text = "n/a" if r["niqe"] is None else f"{r['niqe']:.3f}"
        lines.append(f"| {r['method']} | {noise} | {r['psnr_y']:.2f} | {r['ssim_y']:.4f} | {niqe_text} | "
                     f"{r['seconds']:.2f} |")
    lines.append(f"| HR (ground truth) | - | - | - | {hr_niqe:.3f} | - |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "anime")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--degradations", default="bicubic,realistic")
    parser.add_argument("--scales", help="native scales to run, e.g. 4 or 2,3 (default: every one a model has)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    store = ModelStore()
    upscaler = Upscaler(store, Settings(device=args.device, precision="fp32"))
    models = anime_models(store)
    print(f"# machine: {cpu_name()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; models: {', '.join(models) or 'none'}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        hr_dir = Path(tmp)
        hr_images(hr_dir)
        scales = sorted({s for s, _ in models.values()}, reverse=True)
        if args.scales:
            scales = [s for s in scales if str(s) in args.scales.split(",")]
        for scale in scales:
            names = ["bicubic", *(n for n, (s, _) in models.items() if s == scale)]
            methods = build_methods(names, upscaler)
            hr_niqe = ground_truth_niqe(hr_dir, scale)
            for degradation in args.degradations.split(","):
                crops = Crops()
                result = evaluate(hr_dir, scale, methods, degradation=degradation, seed=0, keep_outputs=crops)
                tag = f"x{scale}_{degradation}"
                print(f"\n## Set14 comic + ppt3 crop, x{scale}, {degradation} LR\n")
                print(table(result, models, hr_niqe))
                for name, why in result.failures.items():
                    print(f"- skipped {name}: {why}")
                sys.stdout.flush()
                grid = args.out / f"crops_{tag}.png"
                crop_grid(crops, scale, grid)
                if scale == 4 and grid.is_file():
                    args.docs.mkdir(parents=True, exist_ok=True)
                    Image.open(grid).convert("RGB").save(args.docs / f"anime_crops_{tag}.jpg",
                                                         quality=JPEG_QUALITY, optimize=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
