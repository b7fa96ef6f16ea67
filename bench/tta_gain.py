"""The README's TTA table: what averaging the 8 flips and transposes (`esrgan.tiling.tta`) gains, and what it costs.

Each model runs on the same clean low-resolution input (MATLAB bicubic reduction of a centre crop of
each benchmark image) with and without TTA, whole image, fp32 on the CPU; PSNR-Y and SSIM-Y against
the ground truth with ``scale`` pixels shaved (`esrgan.quality.metrics.quality`); the time ratio is TTA over
plain, network time only.

    python bench/tta_gain.py [--datasets ../shared/datasets] [--sets Set5,Set14]
                             [--models waifu2x-upconv7-photo-x2:96,realesrgan-x4plus:32]

``MODEL:SIDE`` gives each model's low-resolution crop side (x4plus is the slow one: 32 px keeps the
run near 5 minutes on the shared 2-core EPYC). Prints a markdown table with the machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.photo_noise import cpu_name  # noqa: E402
from esrgan.io.imageio import read_image, to_uint8  # noqa: E402
from esrgan.models.store import ModelStore  # noqa: E402
from esrgan.quality.metrics import quality  # noqa: E402
from esrgan.quality.resize import imresize  # noqa: E402
from esrgan.tiling.plan import TileOptions  # noqa: E402
from esrgan.tiling.run import upscale_tiled
from esrgan.tiling.tta import with_tta  # noqa: E402


def centre_crop(pixels: np.ndarray, side: int) -> np.ndarray:
    side = min(side, pixels.shape[0], pixels.shape[1])
    top, left = (pixels.shape[0] - side) // 2, (pixels.shape[1] - side) // 2
    return np.ascontiguousarray(pixels[top : top + side, left : left + side])


def run(module: torch.nn.Module, lr: np.ndarray, scale: int, multiple: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    out = upscale_tiled(module, lr, scale=scale, size_multiple=multiple, options=TileOptions(tile=0))
    return to_uint8(out), time.perf_counter() - started


def measure(store: ModelStore, model: str, side: int, images: list[Path]) -> dict[str, float]:
    loaded = store.load(model)
    scale = loaded.entry.scale
    plain_scores, tta_scores, plain_time, tta_time = [], [], 0.0, 0.0
    for path in images:
        hr = centre_crop(read_image(path).rgb(), side * scale)
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
        lr = to_uint8(imresize(hr, 1 / scale)).astype(np.float32) / 255
        hr8 = to_uint8(hr)
        plain, seconds = run(loaded.module, lr, scale, loaded.size_multiple)
        plain_time += seconds
        averaged, seconds = run(with_tta(loaded.module), lr, scale, loaded.size_multiple)
        tta_time += seconds
        plain_scores.append(quality(plain, hr8, scale))
        tta_scores.append(quality(averaged, hr8, scale))
        logging.info("%s %s: %.2f -> %.2f dB", model, path.name, plain_scores[-1]["psnr_y"], tta_scores[-1]["psnr_y"])
    mean = lambda scores, key: float(np.mean([s[key] for s in scores]))  # noqa: E731
    return {"psnr": mean(plain_scores, "psnr_y"), "psnr_tta": mean(tta_scores, "psnr_y"),
            "ssim": mean(plain_scores, "ssim_y"), "ssim_tta": mean(tta_scores, "ssim_y"),
            "ratio": tta_time / plain_time, "scale": scale}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    found = [d for d in (ROOT.parent / "shared" / "datasets", ROOT.parent.parent / "shared" / "datasets") if d.is_dir()]
    parser.add_argument("--datasets", type=Path, default=found[0] if found else None,
                        help="folder holding Set5/ and Set14/ (default: ../shared/datasets)")
    parser.add_argument("--sets", default="Set5,Set14")
    parser.add_argument("--models", default="waifu2x-upconv7-photo-x2:96,realesrgan-x4plus:32")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("esrgan.models.store").setLevel(logging.WARNING)
    torch.set_num_threads(2)
    # Each row is printed as soon as it is measured: a run cut short keeps what it finished.
    print(f"Machine: {cpu_name()}, 2 threads, torch {torch.__version__}, fp32, whole image\n")
    print("| model | images (LR crop) | PSNR-Y plain | PSNR-Y TTA | gain | SSIM-Y plain -> TTA | time TTA / plain |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    with tempfile.TemporaryDirectory() as weights:
        store = ModelStore(weights)
        for item in args.models.split(","):
            model, side = item.split(":")
            for name in args.sets.split(","):
                images = sorted((args.datasets / name).glob("*.png")) if args.datasets else []
                if not images:
                    parser.error(f"no {name} images: pass --datasets")
                r = measure(store, model, int(side), images)
                print(f"| {model} ({r['scale']}x) | {name} ({len(images)}, {side} px) | {r['psnr']:.2f} | "
                      f"{r['psnr_tta']:.2f} | {r['psnr_tta'] - r['psnr']:+.2f} dB | {r['ssim']:.4f} -> "
                      f"{r['ssim_tta']:.4f} | {r['ratio']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
