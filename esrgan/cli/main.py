"""The command line: ``python -m esrgan upscale|compare|models|degrade|evaluate|train ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tqdm import tqdm

from esrgan.cli import compare as cli_compare
from esrgan.cli import evaluate as cli_evaluate
from esrgan.cli import video as cli_video
from esrgan.cli.env import engine_settings
from esrgan.errors import FacesUnavailableError, OutputPathError, RemasterError
from esrgan.io.imageio import OUTPUT_FORMATS, check_encodable, format_for_path, read_image, write_image
from esrgan.io.writer import ResultWriter
from esrgan.models import registry
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.quality.evaluate import VGG19_FILE
from esrgan.result import UpscaleResult
from esrgan.runtime.choose import BACKENDS, PRECISIONS
from esrgan.runtime.per_model import model_candidates
from esrgan.settings import Settings
from esrgan.sizing import scale_for_size

__all__ = ["build_parser", "engine_settings", "main"]

log = logging.getLogger("esrgan")

DEFAULT_SCALE = 4.0  # -s when neither it, a size nor --model says one
DESCRIPTION = ("Upscale images and videos with Real-ESRGAN, Real-CUGAN and waifu2x models; list the models, "
               "degrade and evaluate images, fine-tune a model. Each command has its own --help.")


def _add_upscale(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale images", description="Upscale one or more images.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("-s", "--scale", type=_outscale, metavar="X",
                       help="output scale, any from 1 to 8 (default: the --model's own scale, else 4); "
                            "2, 3 (Real-CUGAN) and 4 are native")
    scale.add_argument("--outscale", type=_outscale, dest="scale", metavar="X",
                       help="any output scale from 1 to 8 (model at its native scale, then a Lanczos resample)")
    scale.add_argument("--width", type=_side, metavar="PX",
                       help="the result's width in pixels, aspect kept (1x to 8x the input's; instead of a scale)")
    scale.add_argument("--height", type=_side, metavar="PX",
                       help="the result's height in pixels, aspect kept (1x to 8x the input's; instead of a scale)")
    p.add_argument("--anime", action="store_true", help="use the anime models")
    p.add_argument("--noise", choices=registry.NOISE_LEVELS, default="none",
                   help="noise reduction: none, low, medium or high, for photos (waifu2x) and anime (Real-CUGAN; "
                        "medium up to 2x); the models command lists the models each level uses")
    p.add_argument("--model", help="registry name, custom name or checkpoint file (overrides --anime)")
    p.add_argument("--fast", dest="model", action="store_const", const=registry.ANIMEVIDEO_V3.name,
                   help=f"the fast compact model ({registry.ANIMEVIDEO_V3.name}, ~29x cheaper than x4plus)")
    p.add_argument("--face-enhance", action="store_true",
                   help="restore faces with the GFPGAN or RestoreFormer checkpoint in the weights folder "
                        "(the models command says how to add one)")
    p.add_argument("--tta", action="store_true",
                   help="best quality, 8x slower: average the model over the 8 flips and transposes of the input")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input) or folder (any number of inputs)")
    p.add_argument("--tile", type=int, help="tile side in input pixels (0 = whole image)")
    p.add_argument("--tile-pad", type=int, default=Settings.tile_pad)
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=PRECISIONS, default="auto",
                           help="auto: fp16 on CUDA; on the CPU each model's fastest faithful precision, measured once")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    precision.add_argument("--half", dest="precision", action="store_const", const="fp16", help="fp16 (CUDA)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="torch-cl (channels-last), torch (NCHW, as the official code runs) or ncnn (the shipped "
                        "graphs: Winograd on the CPU, Vulkan GPUs); default: REMASTER_BACKEND, else auto "
                        "(measured per model)")
    p.add_argument("--device", default=None,
                   help="auto (CUDA, else a Vulkan GPU, else the CPU), cpu, cuda[:N] or vulkan[:N]; "
                        "default: REMASTER_DEVICE, else auto")
    p.add_argument("--format", choices=OUTPUT_FORMATS, help="output format (default: by extension, else png)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality")
    p.add_argument("--keep-gps", action="store_true",
                   help="keep the GPS position in the result's EXIF and XMP (removed by default; the rest is kept)")
    cli_video.add_video_arguments(p)
    p.set_defaults(func=cmd_upscale)


def _outscale(text: str) -> float:
    try:
        return registry.check_outscale(text)
    except RemasterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _side(text: str) -> int:
    try:
        side = int(text)
    except ValueError:
        side = 0
    if side < 1:
        raise argparse.ArgumentTypeError(f"a size in pixels is a positive whole number, not {text!r}")
    return side


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list available models and how each scale is made")
    p.add_argument("--json", action="store_true", help="print the listing as JSON (as GET /api/models)")
    p.add_argument("--measure", nargs="*", metavar="MODEL",
                   help="measure each model's rate on this machine, and on the CPU the backend and precision it "
                        "runs in (all available models if none named)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="for --measure (auto: as upscale does)")
    p.set_defaults(func=cmd_models)


def _targets(inputs: list[Path], output: str, size: str, fmt: str | None) -> list[tuple[Path, Path]]:
    """(input, output file) pairs: ``output`` is a folder for several inputs or when it is one; the
    files in it are named ``<input>_<size>.<format>`` (size: "x4", "w1000", "h800"). Several inputs
    and a file name (``out.png``) are refused before anything is made: OutputPathError."""
    named_dir = Path(output).is_dir() or output.endswith(("/", "\\"))
    if len(inputs) == 1 and not named_dir:
        return [(inputs[0], Path(output))]
    if not named_dir and Path(output).suffix:
        raise OutputPathError(f"{len(inputs)} inputs need a folder for -o, not the file name {output}; "
                              f"to write them into a new folder of that name, end it with a slash ({output}/)")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    return [(src, output / f"{src.stem}_{size}.{fmt or 'png'}") for src in inputs]


def _size_tag(args: argparse.Namespace) -> str:
    """How the result's size was asked, for file names."""
    if args.width is not None:
        return f"w{args.width}"
    return f"h{args.height}" if args.height is not None else f"x{args.scale:g}"


def cmd_upscale(args: argparse.Namespace) -> int:
    settings = engine_settings(device=args.device, precision=args.precision, backend=args.backend,
                               tile=args.tile, tile_pad=args.tile_pad)
    upscaler = Upscaler(None, settings)
    if args.scale is None and args.width is None and args.height is None:
        # A model named without a scale gives its own (dat-light-x2: 2x), not a resample to 4x.
        args.scale = float(upscaler.store.entry(args.model).scale) if args.model else DEFAULT_SCALE
    if cli_video.is_video_or_animation(args.inputs):  # a video or an animation, by content
        return cli_video.upscale_video_or_animation(args, upscaler)
    targets = _targets(args.inputs, args.output, _size_tag(args), args.format)
    for _, dst in targets:  # before any work: an hour of inference must not end in "no such folder"
        if not dst.parent.is_dir():
            raise OutputPathError(f"the output folder {dst.parent} does not exist")
    if args.face_enhance and (missing := upscaler.faces.unavailable_reason()) is not None:
        raise FacesUnavailableError(missing)  # before any work, one line
    failures = 0
    with ResultWriter(_say(sys.stdout), _say(sys.stderr)) as writer:  # each write overlaps the next image
        for src, dst in targets:
            try:
                image = read_image(src)
                fmt = args.format or format_for_path(dst)
                scale = args.scale
                if args.width is not None or args.height is not None:
                    scale = scale_for_size(image.width, image.height, args.width, args.height)
                check_encodable(fmt, *registry.output_size(image.width, image.height, scale))
                with tqdm(desc=src.name, unit="step", leave=False, file=sys.stderr) as bar:
                    def progress(done: int, total: int) -> None:
                        bar.total = total
                        bar.update(done - bar.n)

                    result = upscaler.upscale(image, scale, args.anime, args.model, progress=progress,
                                              noise=args.noise, tta=args.tta, faces=args.face_enhance)
            except RemasterError as exc:
                _say(sys.stderr)(f"error: {src}: {exc}")
                failures += 1
                continue
            writer.submit(str(src), partial(_write, src, dst, result, fmt, args))
    return 1 if failures + writer.failures else 0


def _say(stream) -> Callable[[str], None]:
    """A line to ``stream`` without breaking a progress bar that is showing (from any thread)."""
    return lambda line: tqdm.write(line, file=stream)


def _write(src: Path, dst: Path, result: UpscaleResult, fmt: str, args: argparse.Namespace) -> str:
    """Write one result (on the writer's thread); the line that reports it."""
    write_image(dst, result.image, fmt, args.quality, keep_gps=args.keep_gps)
    p = result.provenance
    how = " then ".join((*p.before, p.model)) + (f" + {p.resample}" if p.resample else "") + \
        (" with TTA" if p.tta else "") + (", faces restored" if p.faces else "")
    return (f"{src} -> {dst} ({result.image.width}x{result.image.height}, {how}, "
            f"{p.device} {p.precision} {p.backend}, {p.seconds:.1f}s)")


def cmd_models(args: argparse.Namespace) -> int:
    from esrgan.listing import measure_rate, models_listing

    upscaler = Upscaler(None, engine_settings(device="cpu", precision=args.precision))
    if args.measure is not None:
        names = args.measure or list(upscaler.store.entries())
        per_model = args.precision == "auto"  # each model's backend and precision (esrgan.runtime.per_model)
        for name in names:
            chooses = per_model and len(model_candidates(upscaler.store, name)) > 1
            figures = upscaler.choices.measured(upscaler.store, name) if chooses else None
            rate = measure_rate(upscaler, name)
            print(f"{name}: {rate * 1e6:.2f} s per megapixel processed" + (f"; {figures}" if figures else ""),
                  file=sys.stderr if args.json else sys.stdout, flush=True)
    listing = models_listing(upscaler)
    if args.json:
        print(json.dumps(listing, indent=1))
        return 0
    print(f"Devices: {', '.join(listing['devices'])} (--device; auto: {listing['device']})")
    print("Models:")
    for m in listing["models"]:
        noise = f" noise {m['noise']}" if m["noise"] else ""
        speed = f", {m['seconds_per_megapixel']:.1f} s/MP" if m["seconds_per_megapixel"] is not None else ""
        speed += f", runs on {m['backend']} {m['precision']} (measured)" if m["backend"] is not None else ""
        state = m["source"] if m["available"] else f"unavailable: {m['unavailable_reason']}"
        print(f"  {m['name']:34} {m['family']:11} {m['native_scale']}x{' anime' if m['anime'] else ''}{noise}"
              f"{speed}  {state}; licence {m['licence'] or 'unknown'}")
    for name, why in upscaler.store.problems.items():
        print(f"  {name:34} skipped: {why}")
    faces = listing["faces"]
    print(f"Restore faces (--face-enhance): {faces['checkpoint']}" if faces["available"]
          else f"Restore faces (--face-enhance): unavailable. {faces['unavailable_reason']}")
    print("How each result is made (scale, content, noise):")
    for r in listing["routes"]:
        how = (" then ".join(r["chain"]) + (f" + {r['resample']}" if r["resample"] else " (native)")) if r["model"] \
            else f"unavailable: {r['error']}"
        print(f"  {r['scale']}x {'anime' if r['anime'] else 'photo'} noise {r['noise']:6}  {how}")
    print(f"  any scale from {registry.MIN_SCALE:g} to {registry.MAX_SCALE:g} (--outscale) uses the route of the "
          "nearest quick scale at or above it, then a Lanczos resample")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a model on your own images",
                       description="Fine-tune a Real-ESRGAN generator on a folder of HR images.")
    p.add_argument("--hr-dir", type=Path, required=True, help="your high-resolution images")
    p.add_argument("--lr-dir", type=Path, help="paired LR images (else degraded on the fly)")
    p.add_argument("--config", type=Path, help="YAML file of training options (see TrainConfig)")
    p.add_argument("--model", help="x4plus, anime, animevideov3, a registry name or a checkpoint")
    p.add_argument("--iters", type=int)
    p.add_argument("--patch", type=int, help="LR crop side (HR crop is patch x scale)")
    p.add_argument("--batch", type=int)
    p.add_argument("--freeze", help="frozen layers, e.g. conv_first,body.0-15 ('' trains everything)")
    p.add_argument("--lr-g", type=float, dest="lr_g", help="generator learning rate")
    p.add_argument("--gan-weight", type=float, dest="gan_weight", help="0 disables the discriminator")
    p.add_argument("--pixel-loss", choices=("l1", "mse"), dest="pixel_loss")
    p.add_argument("--no-perceptual", action="store_const", const=0.0, dest="perceptual_weight",
                   help="train without the VGG19 perceptual loss")
    p.add_argument("--vgg-weights", type=Path, help=f"torchvision VGG19 ImageNet weights ({VGG19_FILE})")
    p.add_argument("--val-every", type=int, dest="val_every")
    p.add_argument("--patience", type=int, help="early stop after this many validations without gain")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--name", help="the custom model's name (default: finetuned-RUN_DIR)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="RUN_DIR")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from esrgan.train.config import load_config
    from esrgan.train.loop import Trainer

    options = ("model", "iters", "patch", "batch", "freeze", "lr_g", "gan_weight", "pixel_loss",
               "perceptual_weight", "val_every", "patience", "seed", "device", "name")
    config = load_config(args.config, {k: getattr(args, k) for k in options})
    trainer = Trainer(config, args.hr_dir, args.output, store=ModelStore(engine_settings().weights_folder),
                      lr_dir=args.lr_dir, vgg_weights=args.vgg_weights)
    trainer.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m esrgan", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_upscale(sub)
    _add_models(sub)
    cli_compare.add_compare(sub, _outscale, _side)
    cli_evaluate.add_degrade(sub)
    cli_evaluate.add_evaluate(sub)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except RemasterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
