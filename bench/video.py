"""Video frame rate: the engine end to end against the network alone, and against the official
path's semantics (decode one frame, run the network, encode it, then the next: no overlap), in one
process sitting, on a generated 320x240 clip (moving crops of a real photo), by default at 2x with
realesr-animevideov3 (any model and scale: ``--model``, ``--scale``).

Rows (frames per second, ratio to the network alone):
    network only     the forward pass on frames already in memory (no decode, resample or encode)
    frame function   the Upscaler per frame (network + tiling + Lanczos 4x -> 2x + conversions)
    official path    decode -> frame function -> encode, one frame at a time, one thread
    engine           esrgan.video.upscale_video: decode, inference and encode overlapping

    python bench/video.py [--model realesr-animevideov3] [--scale 2] [--frames 24] [--rounds 2]
                          [--precision fp32] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.pipeline import Upscaler  # noqa: E402
from esrgan.settings import Settings  # noqa: E402
from esrgan.video.frames import DEFAULT_VIDEO_MODEL, frame_to_rgb, frame_upscaler, rgb_to_frame  # noqa: E402  # noqa: E402
from esrgan.video.options import (
    EncodeOptions,
    VideoWork,  # noqa: E402
)
from esrgan.video.probe import probe
from esrgan.video.result import output_size  # noqa: E402
from esrgan.video.streams import PictureFormat, add_video_stream  # noqa: E402
from esrgan.video.transcode import upscale_video

WIDTH, HEIGHT, FPS = 320, 240, 24
PHOTO = ROOT / "tests" / "data" / "astronaut.png"


def write_clip(path: Path, frames: int) -> None:
    photo = np.asarray(Image.open(PHOTO).convert("RGB").resize((WIDTH + frames * 2, HEIGHT + frames * 2)))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(frames):
            crop = np.ascontiguousarray(photo[i * 2 : i * 2 + HEIGHT, i * 2 : i * 2 + WIDTH])
            frame = av.VideoFrame.from_ndarray(crop, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def network_only(upscaler: Upscaler, model: str, frames: list[np.ndarray]) -> float:
    loaded = upscaler.load(model)
    started = time.perf_counter()
    with torch.inference_mode():
        for rgb in frames:
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(loaded.device, loaded.dtype) / 255
            if loaded.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loaded.module(x).clamp_(0, 1)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def frame_function_only(fn, frames: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for rgb in frames:
        fn(rgb)
    return time.perf_counter() - started


def official_path(src: Path, dst: Path, fn, scale: int) -> float:
    """Real-ESRGAN's inference_realesrgan_video.py semantics: read a frame, upscale it, write it."""
    info = probe(src)
    _, size = output_size(info.width, info.height, scale)
    started = time.perf_counter()
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = add_video_stream(out, PictureFormat.of(info, *size), EncodeOptions())
        for frame in source.decode(video=0):
            rgb = fn(frame_to_rgb(frame, info.colour))[: size[1], : size[0]]
            encoded = rgb_to_frame(rgb, info.colour, stream.pix_fmt)
            encoded.pts, encoded.time_base = frame.pts, frame.time_base
            out.mux(stream.encode(encoded))
        out.mux(stream.encode(None))
    return time.perf_counter() - started


def engine(src: Path, dst: Path, fn, scale: int) -> float:
    started = time.perf_counter()
    upscale_video(src, dst, VideoWork(fn, scale))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_VIDEO_MODEL)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many rounds per row")
    args = parser.parse_args()
    upscaler = Upscaler(settings=Settings(device=args.device, precision=args.precision))
    fn = frame_upscaler(upscaler, args.scale, model=args.model)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, device {args.device}, "
          f"{args.precision}; {args.model} {args.scale}x on {WIDTH}x{HEIGHT}, {args.frames} frames; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "clip.mp4"
        write_clip(src, args.frames)
        with av.open(str(src)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        fn(frames[0])  # load the model, warm the allocator
        network_only(upscaler, args.model, frames[:2])
        best: dict[str, float] = {}
        for _ in range(args.rounds):  # rounds interleave the rows, so a busy spell hits them all
            for name, seconds in (
                ("network only", network_only(upscaler, args.model, frames)),
                ("frame function", frame_function_only(fn, frames)),
                ("official path", official_path(src, Path(folder) / "official.mp4", fn, args.scale)),
                ("engine", engine(src, Path(folder) / "engine.mp4", fn, args.scale)),
            ):
                best[name] = min(seconds, best.get(name, seconds))
        rows = list(best.items())
    reference = args.frames / rows[0][1]
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"{'row':<16} {'fps':>8} {'vs network':>11}")
    for name, seconds in rows:
        fps = args.frames / seconds
        print(f"{name:<16} {fps:8.2f} {fps / reference:10.0%}", flush=True)


if __name__ == "__main__":
    main()
