"""The README's photo noise table: which chain of models cleans a noisy photo best, per noise level and scale.

Each level is two degradations, applied separately to the low-resolution photo (MATLAB bicubic
reduction of the ground truth; at 1x the ground truth itself), seeded:

    low    = Gaussian sigma 5  | JPEG quality 90
    medium = Gaussian sigma 15 | JPEG quality 60
    high   = Gaussian sigma 25 | JPEG quality 30

Every candidate chain (`chains`) runs on every degraded input through the engine (whole image, fp32,
CPU), ends with a Lanczos resample to the asked scale where its native scale differs, and is scored
against the ground truth: PSNR-Y and SSIM-Y with ``scale`` pixels shaved (`esrgan.quality.metrics.quality`),
and NIQE (`esrgan.quality.niqe`, lower is better) of the whole output. A level's route is the chain with the
best mean PSNR-Y over its two degradations; SSIM breaks ties. 3x and 8x are made by resampling a 4x
result, as every photo route does, so the 4x table decides them too.

Images: 96 x 96 centre crops of the photos in tests/data (astronaut, coffee, chelsea_head; public
domain or CC0, see tests/data/README.md); ``--images`` takes other files (e.g. from ../shared/datasets).

    python bench/photo_noise.py [--scales 1,2,4] [--images a.png,b.png] [--crop 96] [--json out.json]

Slow where x4plus runs (at 2x on 48 px inputs, at 4x on 24 px ones): on the shared 2-core EPYC under
other load, about 2 minutes for 1x, 25 for 4x and more for 2x; run the scales apart (``--scales 4``).
Prints one markdown table per scale, with the machine, then the winner of each (scale, level).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.io.imageio import DecodedImage, read_image, to_uint8  # noqa: E402
from esrgan.models.registry import spec  # noqa: E402
from esrgan.models.store import ModelStore  # noqa: E402
from esrgan.pipeline import Upscaler, resample  # noqa: E402
from esrgan.quality.degrade import add_noise, jpeg  # noqa: E402
from esrgan.quality.metrics import quality  # noqa: E402
from esrgan.quality.niqe import NIQEError, niqe  # noqa: E402
from esrgan.quality.resize import imresize  # noqa: E402
from esrgan.settings import Settings  # noqa: E402

LEVELS = {"low": (("sigma", 5), ("jpeg", 90)), "medium": (("sigma", 15), ("jpeg", 60)),
          "high": (("sigma", 25), ("jpeg", 30))}
# Our level -> waifu2x's noise levels tried (0 and 1 are both "low").
WAIFU2X_LEVELS = {"low": (0, 1), "medium": (2,), "high": (3,)}
DEFAULT_IMAGES = ("astronaut.png", "coffee.png", "chelsea_head.png")
X4PLUS = "realesrgan-x4plus"
SEED = 21


def chains(scale: int, level: str) -> list[tuple[str, ...]]:
    """Candidate chains (model names, run in order) for photos at ``scale`` with noise ``level``;
    an empty chain is the degraded input itself, Lanczos-resized (the baseline)."""
    found: list[tuple[str, ...]] = [()]
    for n in WAIFU2X_LEVELS[level]:
        photo, cunet1 = f"waifu2x-upconv7-photo-x2-noise{n}", f"waifu2x-cunet-x1-noise{n}"
        found += [(photo,), (cunet1,)]
        if scale >= 2:
            found += [(cunet1, "waifu2x-upconv7-photo-x2"), (f"waifu2x-cunet-x2-noise{n}",)]
    if scale >= 2:
        n = WAIFU2X_LEVELS[level][-1]  # x4plus chains are the costly ones: one waifu2x level each
        found += [(X4PLUS,), (f"waifu2x-cunet-x1-noise{n}", X4PLUS)]
    return found


def degraded(pixels: np.ndarray, kind: str, value: int, seed: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] with one degradation, quantised to 8 bits as a file would be."""
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
    rng = torch.Generator().manual_seed(seed)
    if kind == "sigma":
        x = add_noise(x, rng, gaussian_prob=1.0, sigma_range=(value, value), poisson_range=(0, 0), gray_prob=0.0)
    else:
        x = jpeg(x, rng, (value, value))
    return to_uint8(x[0].permute(1, 2, 0).numpy()).astype(np.float32) / 255.0


def run_chain(upscaler: Upscaler, chain: Sequence[str], lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The chain's output resampled (Lanczos) to ``size`` = (width, height), as uint8."""
    pixels = lr
    for name in chain:
        pixels = upscaler.upscale(DecodedImage(pixels), spec(name).scale, model=name, float_result=True).image.pixels
    if pixels.shape[1::-1] != size:
        pixels = resample(pixels, size)
    return to_uint8(pixels)


def score(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float, float | None]:
    q = quality(sr, hr, max(scale, 1))
    try:
        natural = niqe(sr)
    except NIQEError:
        natural = None
    return q["psnr_y"], q["ssim_y"], natural


def measure(upscaler: Upscaler, images: dict[str, np.ndarray], scale: int) -> dict[str, dict[str, list]]:
    """level -> chain label -> [(psnr_y, ssim_y, niqe) for each image and degradation]."""
    table: dict[str, dict[str, list]] = {}
    for level, degradations in LEVELS.items():
        rows = table.setdefault(level, {})
        for image_name, hr in images.items():
            lr_clean = hr if scale == 1 else imresize(hr, 1 / scale).astype(np.float32).clip(0, 1)
            hr8 = to_uint8(hr)
            for kind, value in degradations:
                seed = zlib.crc32(f"{SEED}:{image_name}:{kind}:{value}".encode())
                lr = degraded(lr_clean, kind, value, seed)
                for chain in chains(scale, level):
                    label = " > ".join(chain) or "input (Lanczos)"
                    started = time.perf_counter()
                    sr = run_chain(upscaler, chain, lr, (hr.shape[1], hr.shape[0]))
                    rows.setdefault(label, []).append(score(sr, hr8, scale))
                    logging.info("%dx %s %s %s=%s %s: %.1f s", scale, level, image_name, kind, value, label,
                                 time.perf_counter() - started)
    return table


def winners(table: dict[str, dict[str, list]]) -> dict[str, str]:
    """level -> the chain with the best mean PSNR-Y (SSIM breaks ties)."""
    return {level: max(rows, key=lambda label: (round(float(np.mean([r[0] for r in rows[label]])), 2),
                                                 float(np.mean([r[1] for r in rows[label]]))))
            for level, rows in table.items()}


def markdown(table: dict[str, dict[str, list]], scale: int) -> str:
    best = winners(table)
    labels = list(dict.fromkeys(label for rows in table.values() for label in rows))
    lines = [f"**{scale}x** (PSNR-Y dB / SSIM-Y / NIQE, mean of the level's two degradations over the images; "
             "**bold**: the route)", "",
             "| chain | " + " | ".join(LEVELS) + " |", "| --- |" + " --- |" * len(LEVELS)]
    for label in labels:
        cells = []
        for level in LEVELS:
            rows = table[level].get(label)
            if not rows:
                cells.append("")
                continue
            niqes = [r[2] for r in rows if r[2] is not None]
            text = (f"{np.mean([r[0] for r in rows]):.2f} / {np.mean([r[1] for r in rows]):.3f} / "
                    + (f"{np.mean(niqes):.2f}" if niqes else "n/a"))
            cells.append(f"**{text}**" if best[level] == label else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_images(paths: Sequence[Path], crop: int) -> dict[str, np.ndarray]:
    images = {}
    for path in paths:
        pixels = read_image(path).rgb()
        top, left = (pixels.shape[0] - crop) // 2, (pixels.shape[1] - crop) // 2
        images[path.name] = np.ascontiguousarray(pixels[top : top + crop, left : left + crop])
    return images


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,2,4", help="comma-separated scales (1, 2, 4)")
    parser.add_argument("--images", default=",".join(str(ROOT / "tests" / "data" / n) for n in DEFAULT_IMAGES))
    parser.add_argument("--crop", type=int, default=96, help="centre crop side of each photo (ground truth)")
    parser.add_argument("--json", type=Path, help="also write the raw scores here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("esrgan.pipeline", "esrgan.models.store", "esrgan.speed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(2)
    images = load_images([Path(p) for p in args.images.split(",")], args.crop)
    started = time.perf_counter()
    print(f"Machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{len(images)} photos ({', '.join(images)}), {args.crop} px\n", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as weights:
        upscaler = Upscaler(ModelStore(weights), Settings(device="cpu", precision="fp32", tile=0))
        for scale in (int(s) for s in args.scales.split(",")):  # each table as soon as it is measured
            results[str(scale)] = table = measure(upscaler, images, scale)
            print(markdown(table, scale), "\n", flush=True)
            print(f"{scale}x routes: " + ", ".join(f"{level}: {label}" for level, label in winners(table).items()),
                  f"({time.perf_counter() - started:.0f} s so far)\n", flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
