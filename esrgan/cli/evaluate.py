"""The command line's dataset commands: ``degrade`` (paired LR/HR folders with the realistic
degradation) and ``evaluate`` (methods scored against ground truth, or by NIQE alone)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from esrgan.cli.env import engine_settings
from esrgan.errors import RemasterError
from esrgan.io.imageio import DecodedImage, encode, read_image, write_atomic
from esrgan.models import registry
from esrgan.pipeline import Upscaler
from esrgan.quality.evaluate import (
    IMAGE_SUFFIXES,
    VGG19_FILE,
    VGGDistance,
    build_methods,
    evaluate,
    evaluate_no_reference,
    image_seed,
    make_lr,
    to_uint8,
    write_csv,
)
from esrgan.quality.metrics import mod_crop


def add_degrade(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("degrade", help="make a paired LR/HR folder with the realistic degradation")
    p.add_argument("hr_dir", type=Path, metavar="HR_DIR")
    p.add_argument("-s", "--scale", type=int, choices=registry.SCALES, default=4)
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for HR/ and LR/")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_degrade)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score methods against ground truth (PSNR/SSIM, NIQE), or by NIQE alone")
    p.add_argument("hr_dir", type=Path, metavar="DIR", help="HR images; with --no-reference, LR photos to upscale")
    p.add_argument("--no-reference", action="store_true",
                   help="DIR holds photos without ground truth: upscale them and score NIQE only")
    p.add_argument("-s", "--scale", type=int, choices=registry.SCALES, default=4)
    p.add_argument("--lr-dir", type=Path, help="LR inputs (NAME.* or NAMEx{scale}.*) instead of making them")
    p.add_argument("--degradation", choices=("bicubic", "realistic"), default="bicubic")
    p.add_argument("--methods", default="nearest,bicubic,lanczos,realesrgan,realesrgan-anime",
                   help="comma-separated: nearest, bicubic, lanczos, realesrgan, realesrgan-anime, or model names")
    p.add_argument("--seed", type=int, default=0, help="base seed of the realistic degradation")
    p.add_argument("--csv", type=Path, required=True, help="per-image and mean scores")
    p.add_argument("--report", type=Path, help="folder for a markdown report with figures")
    p.add_argument("--vgg-weights", type=Path, help=f"torchvision VGG19 weights ({VGG19_FILE})")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)


def cmd_degrade(args: argparse.Namespace) -> int:
    paths = sorted(p for p in args.hr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for folder in ("HR", "LR"):
        (args.output / folder).mkdir(parents=True, exist_ok=True)
    for path in tqdm(paths, desc="degrading", unit="image", file=sys.stderr):
        try:
            image = read_image(path, max_pixels=None)
        except RemasterError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            continue
        hr = to_uint8(mod_crop(image.color, args.scale))
        lr = make_lr(hr, args.scale, "realistic", image_seed(args.seed, path.name))
        for folder, pixels_out, name in (("HR", hr, path.stem), ("LR", lr, f"{path.stem}x{args.scale}")):
            data = encode(DecodedImage(pixels_out.astype(np.float32) / 255.0), "png")
            write_atomic(args.output / folder / f"{name}.png", data)
    print(f"{len(paths)} pairs in {args.output}/HR and {args.output}/LR (seed {args.seed})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    upscaler = Upscaler(None, engine_settings(device=args.device, precision="fp32"))
    methods = build_methods(names, upscaler)
    weights = VGGDistance.find(args.vgg_weights)
    from esrgan.quality.report import Crops, markdown_table, write_report

    crops = Crops() if args.report else None
    if args.no_reference:
        result = evaluate_no_reference(args.hr_dir, args.scale, methods, crops)
    else:
        result = evaluate(args.hr_dir, args.scale, methods, args.lr_dir, args.degradation, args.seed,
                          VGGDistance(weights) if weights else None, crops)
    write_csv(result, args.csv)
    source = "no reference" if args.no_reference else "given LR" if args.lr_dir else f"{args.degradation} degradation"
    title = f"{args.hr_dir.name} x{args.scale}, {source}"
    print(title)
    print(markdown_table(result))
    for note in result.notes:
        print(f"note: {note}")
    for name, why in result.failures.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    if args.report:
        print(f"report: {write_report(result, crops, args.scale, title, args.report)}")
    return 1 if not result.rows else 0
