"""The command line's video mode: ``python -m esrgan upscale clip.mp4 -s 2 -o clip_x2.mp4``.

`esrgan.cli.main`'s upscale command hands an input over here when its content (not its name) is a video
or an animated image (`esrgan.video.media_kind`). A clip becomes a video (codec, CRF and container
from the flags, the container by default from the output's suffix); a GIF, animated WebP or APNG
becomes the same kind, or a video when the output's suffix names a video container. A bar counts
frames with their rate and the time left; nothing is written at the output path unless the whole
file is (the engine writes beside it and renames at the end).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from esrgan.errors import InvalidOptionError, OutputPathError, RemasterError
from esrgan.pipeline import UPSCALED_LOG, Upscaler
from esrgan.video.animated import probe_animation, upscale_animation
from esrgan.video.frames import frame_upscaler
from esrgan.video.options import CODECS, CONTAINERS, SUFFIX_CONTAINERS, EncodeOptions, VideoWork, container_for_path
from esrgan.video.probe import media_kind, probe
from esrgan.video.transcode import upscale_video

VIDEO_OR_ANIMATION = ("video", "animation")
# The file suffixes an animated image of each kind may be written under (its kind is kept).
ANIMATION_SUFFIXES = {"gif": (".gif",), "webp": (".webp",), "apng": (".png", ".apng")}


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The upscale command's flags for a video (ignored for images)."""
    group = parser.add_argument_group("video", "for a video or an animation written as a video")
    group.add_argument("--codec", choices=tuple(CODECS), default=None,
                       help="video codec (default h264; hevc 10-bit for a source of more than 8 bits)")
    group.add_argument("--crf", type=int, help="constant quality (default: h264 18, vp9 and av1 30)")
    group.add_argument("--container", choices=tuple(CONTAINERS),
                       help="mp4, mkv or webm (default: from the output's suffix, else mp4)")


def is_video_or_animation(inputs: list[Path]) -> bool:
    """Whether any input is a video or an animated image, by content (a file that cannot be read
    at all is left to the image path, which says why)."""
    for path in inputs:
        try:
            if path.is_file() and media_kind(path) in VIDEO_OR_ANIMATION:
                return True
        except RemasterError:
            continue
    return False


def upscale_video_or_animation(args: argparse.Namespace, upscaler: Upscaler) -> int:
    """Upscale the one video or animation of ``args`` (the upscale command's namespace)."""
    if len(args.inputs) != 1:
        raise InvalidOptionError("upscale one video or animation at a time (images may be given together)")
    if getattr(args, "width", None) is not None or getattr(args, "height", None) is not None:
        raise InvalidOptionError("a video or an animation takes a scale (-s), not --width or --height")
    src = args.inputs[0]
    kind = media_kind(src)
    dst = _output_path(src, kind, args)
    if not dst.parent.is_dir():
        raise OutputPathError(f"the output folder {dst.parent} does not exist")
    container = args.container or container_for_path(str(dst))
    options = EncodeOptions(codec=args.codec, container=container, crf=args.crf).validate()
    # Every refusal comes before the bar: the probe checks the clip, frame_upscaler the model.
    info = probe(src) if kind == "video" else probe_animation(src)
    if getattr(args, "face_enhance", False):
        raise InvalidOptionError("--face-enhance is for still images; a video or an animation is upscaled without it")
    fn = frame_upscaler(upscaler, args.scale, model=args.model, noise=args.noise, anime=args.anime,
                        tta=args.tta)
    with tqdm(desc=src.name, unit="frame", leave=False, file=sys.stderr) as bar, _no_line_per_frame():
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        if kind == "animation":
            as_video = dst.suffix.lower() in SUFFIX_CONTAINERS
            result = upscale_animation(src, dst, VideoWork(fn, args.scale, options, progress=progress),
                                       "video" if as_video else "same")
            print(f"{src} -> {dst} ({result.width}x{result.height}, {result.frames} frames, {result.kind}, "
                  f"{result.seconds:.1f}s)")
            return 0
        result = upscale_video(src, dst, VideoWork(fn, args.scale, options, progress=progress), info=info)
    print(f"{src} -> {dst} ({result.width}x{result.height}, {result.frames} frames, {result.codec} in "
          f"{result.container}, crf {result.crf}, {result.seconds:.1f}s)")
    for line in (*result.streams, *result.notes):
        print(f"  {line}")
    return 0


@contextmanager
def _no_line_per_frame() -> Iterator[None]:
    """Leave out the engine's line per upscaled image (``-v``) while a clip or an animation runs:
    the bar counts the frames, and the log says one line per segment (or per clip)."""
    engine = logging.getLogger(Upscaler.__module__)

    def not_a_frame(record: logging.LogRecord) -> bool:
        return record.msg != UPSCALED_LOG

    engine.addFilter(not_a_frame)
    try:
        yield
    finally:
        engine.removeFilter(not_a_frame)


def _output_path(src: Path, kind: str, args: argparse.Namespace) -> Path:
    """The output file: ``-o`` itself, or in the folder ``-o`` names, ``<stem>_x<scale>.<suffix>``.

    Raises:
        InvalidOptionError: An animation asked to become another kind of image (a GIF as .webp).
    """
    output = str(args.output)
    if Path(output).is_dir() or output.endswith(("/", "\\")):
        if kind == "animation":
            suffix = src.suffix.lower() or ANIMATION_SUFFIXES[probe_animation(src).kind][0]
        else:
            suffix = CONTAINERS[args.container or "mp4"].suffix
        return Path(output) / f"{src.stem}_x{args.scale:g}{suffix}"
    dst = Path(output)
    if kind == "animation" and dst.suffix.lower() not in SUFFIX_CONTAINERS:
        animation = probe_animation(src).kind
        if dst.suffix.lower() not in ANIMATION_SUFFIXES[animation]:
            allowed = ", ".join(ANIMATION_SUFFIXES[animation] + tuple(SUFFIX_CONTAINERS))
            raise InvalidOptionError(f"{src.name} is an animated {animation}: write it as "
                                     f"{allowed} (not {dst.suffix or 'no suffix'})")
    return dst
