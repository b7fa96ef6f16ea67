"""``python -m esrgan compare``: several models on one crop, one PNG each, a labelled contact sheet
and a table of times (the crop's, and the estimate for the whole image)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from esrgan.cli.env import engine_settings
from esrgan.compare import Candidate, Crop, check_crop, compare
from esrgan.errors import OutputPathError, RemasterError
from esrgan.io.imageio import read_image
from esrgan.models import registry
from esrgan.pipeline import Upscaler
from esrgan.sizing import scale_for_size

LABEL_HEIGHT = 32  # px under each panel of the sheet: the title and the time
MIN_PANEL_WIDTH = 160  # a panel is at least this wide, so its label can be read


def _crop(text: str) -> Crop:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a crop is X,Y,W,H in whole pixels, not {text!r}") from None
    return x, y, w, h


def add_compare(sub: argparse._SubParsersAction, outscale, side) -> None:
    """The ``compare`` subcommand; ``outscale`` and ``side`` parse -s and --width/--height as ``upscale`` does."""
    p = sub.add_parser("compare", help="compare models on a crop before a long run",
                       description="Run several models on one crop of IMAGE: one PNG each, sheet.png, a table.")
    p.add_argument("image", type=Path, metavar="IMAGE")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("-s", "--scale", type=outscale, default=4, metavar="X", help="output scale (default 4)")
    scale.add_argument("--width", type=side, metavar="PX", help="the result's width, aspect kept")
    scale.add_argument("--height", type=side, metavar="PX", help="the result's height, aspect kept")
    p.add_argument("--anime", action="store_true", help="anime and illustration candidates")
    p.add_argument("--noise", choices=registry.NOISE_LEVELS, default="none", help="noise reduction wanted")
    p.add_argument("--models", help="comma-separated model names (default: the route's and its alternatives)")
    p.add_argument("--crop", type=_crop, metavar="X,Y,W,H", help="the region (default: the most detailed one)")
    p.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="run in float32")
    p.add_argument("--device", default=None, help="auto, cpu or cuda[:N]")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the PNGs and sheet.png")
    p.set_defaults(func=cmd_compare)


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8), "RGB")


def sheet(original: np.ndarray, found: list[Candidate]) -> Image.Image:
    """The contact sheet: the original crop resized (nearest: its pixels as they are), then each
    candidate, side by side, each labelled with its title and crop time."""
    height, width = found[0].pixels.shape[:2]
    panel = max(width, MIN_PANEL_WIDTH)
    board = Image.new("RGB", (panel * (len(found) + 1), height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(board)
    panels = [(_to_image(original).resize((width, height), Image.NEAREST), "original crop", "")]
    panels += [(_to_image(c.pixels), c.title, f"{c.crop_seconds:.1f} s (whole: ~{c.full_seconds:.0f} s)")
               for c in found]
    for index, (image, title, timing) in enumerate(panels):
        board.paste(image, (index * panel, 0))
        draw.text((index * panel + 2, height + 2), title, fill="black")
        draw.text((index * panel + 2, height + 16), timing, fill="black")
    return board


def cmd_compare(args: argparse.Namespace) -> int:
    image = read_image(args.image)
    rgb = image.rgb()
    scale = args.scale
    if args.width is not None or args.height is not None:
        scale = scale_for_size(image.width, image.height, args.width, args.height)
    if args.crop is not None:
        check_crop(args.crop, image.width, image.height)  # before any file or folder is made
    if not args.output.parent.is_dir():
        raise OutputPathError(f"the output folder {args.output.parent} does not exist")
    upscaler = Upscaler(None, engine_settings(device=args.device, precision=args.precision))
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    for name in models or ():
        upscaler.store.entry(name)  # an unknown name fails before any work
    crop, found = compare(upscaler, rgb, scale, args.crop, models, args.anime, args.noise)
    if not found:
        raise RemasterError("no model to compare is available here")
    x, y, w, h = crop
    args.output.mkdir(exist_ok=True)
    height, width = found[0].pixels.shape[:2]
    for candidate in found:
        _to_image(candidate.pixels).save(args.output / f"{candidate.model}_{width}x{height}.png")
    sheet(rgb[y : y + h, x : x + w], found).save(args.output / "sheet.png")
    print(f"crop {w}x{h} at ({x}, {y}) of {image.width}x{image.height}, {scale:g}x -> {width}x{height}")
    print(f"{'model':34} {'crop s':>8} {'whole image s (estimate)':>26}")
    for candidate in found:
        print(f"{candidate.model:34} {candidate.crop_seconds:8.2f} {candidate.full_seconds:26.1f}")
    return 0
