"""Video at depth and in segments cut at any frame, on generated clips (a smooth 16-bit gradient
that drifts, so 8 bits would band it), upscaled by the real engine (realesr-animevideov3 at 2x
unless told).

Rows:
    depth            frames per second of `upscale_video` for the same clip at 8 bits (H.264, and
                     HEVC to tell the codec from the depth) and at 10 bits (HEVC Main10, the default)
    segments         a clip with one keyframe (x264's default interval) planned by its estimated
                     work into segments: the frames decoded and dropped before each segment's first
                     (its decode starts at the keyframe before it), their decode time as a share of
                     the whole run, and the segmented run's wall time against one whole run

    python bench/video_depth.py [--model realesr-animevideov3] [--scale 2] [--size 160x120]
                                [--frames 24] [--segment-seconds 10]
"""

from __future__ import annotations

import argparse
import bisect
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.pipeline import Upscaler  # noqa: E402
from esrgan.settings import Settings  # noqa: E402
from esrgan.video.frames import DEFAULT_VIDEO_MODEL, frame_upscaler  # noqa: E402
from esrgan.video.options import EncodeOptions, VideoWork  # noqa: E402
from esrgan.video.probe import probe  # noqa: E402
from esrgan.video.segments import join_segments, plan_segments, upscale_segment  # noqa: E402
from esrgan.video.transcode import upscale_video  # noqa: E402

FPS = 12


def write_clip(path: Path, width: int, height: int, frames: int, deep: bool, gop: int = 250) -> Path:
    """The same drifting gradient as 10-bit HEVC (BT.2020) or 8-bit H.264 (BT.709)."""
    encoder, pix_fmt = ("libx265", "yuv420p10le") if deep else ("libx264", "yuv420p")
    options = {"x265-params": f"keyint={gop}:pools=none:log-level=error"} if deep else {"g": str(gop)}
    with av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, rate=FPS, options={"crf": "12", **options})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = Fraction(1, FPS)
        ramp = np.linspace(0.1, 0.9, width)[None, :] * np.linspace(0.6, 1.0, height)[:, None]
        for i in range(frames):
            rgb = np.stack([np.roll(ramp, i, axis=1), ramp, ramp[::-1]], axis=2)
            pixels = np.ascontiguousarray((rgb * 65535).astype(np.uint16))
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb48le").reformat(format=pix_fmt)
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def decode_seconds_per_frame(path: Path) -> float:
    info = probe(path)
    with av.open(str(path)) as container:
        seconds = timed(lambda: [f.to_ndarray(format="rgb48le" if info.bits > 8 else "rgb24")
                                 for f in container.decode(video=0)])
    return seconds / info.frames


def depth_rows(folder: Path, fn, args) -> None:
    width, height = args.size
    eight = write_clip(folder / "8.mp4", width, height, args.frames, deep=False)
    ten = write_clip(folder / "10.mp4", width, height, args.frames, deep=True)
    fn(np.zeros((height, width, 3), np.uint8))  # load the model
    rows = [("8-bit, H.264", eight, EncodeOptions()), ("8-bit, HEVC", eight, EncodeOptions(codec="hevc")),
            ("10-bit, HEVC Main10", ten, EncodeOptions())]
    print(f"{'depth':<22} {'fps':>7}  written")
    for name, src, options in rows:
        dst = folder / f"out-{name[:2]}-{options.codec}.mp4"

        def run(src=src, dst=dst, options=options) -> None:
            upscale_video(src, dst, VideoWork(fn, args.scale, options))

        seconds = min(timed(run) for _ in range(args.rounds))
        print(f"{name:<22} {args.frames / seconds:7.2f}  {probe(dst).pix_fmt}", flush=True)


def segment_rows(folder: Path, fn, upscaler: Upscaler, model: str, args) -> None:
    width, height = args.size
    src = write_clip(folder / "one-keyframe.mp4", width, height, args.frames, deep=False)
    info = probe(src)
    per_frame = upscaler.estimate_seconds(model, width, height)
    segments = plan_segments(info, per_frame, args.segment_seconds)
    firsts = [bisect.bisect_left(info.pts, s.start_pts) for s in segments]
    keys = [bisect.bisect_left(info.pts, k) for k in info.keyframes]
    dropped = sum(first - keys[bisect.bisect_right(keys, first) - 1] for first in firsts)
    whole = timed(lambda: upscale_video(src, folder / "whole.mp4", VideoWork(fn, args.scale)))
    parts = [folder / s.file_name for s in segments]

    def in_segments() -> None:
        for segment, part in zip(segments, parts, strict=True):
            upscale_segment(info, segment, part, VideoWork(fn, args.scale))
        join_segments(info, parts, folder / "joined.mp4")

    segmented = timed(in_segments)
    decode = decode_seconds_per_frame(src)
    print(f"segments: {len(info.keyframes)} keyframe, {info.frames} frames, estimate {per_frame:.3f} s a frame, "
          f"{args.segment_seconds:g} s a segment -> {len(segments)} segments of {[s.frames for s in segments]}")
    print(f"frames decoded and dropped: {dropped} ({dropped / info.frames:.0%} of the frames); their decode "
          f"{dropped * decode:.3f} s = {dropped * decode / whole:.2%} of the whole run ({whole:.1f} s)")
    print(f"wall time: whole run {whole:.1f} s, in segments (with the join) {segmented:.1f} s "
          f"({segmented / whole - 1:+.1%})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_VIDEO_MODEL)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--size", type=lambda s: tuple(int(v) for v in s.split("x")), default=(160, 120))
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1, help="best of this many rounds per depth row")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    upscaler = Upscaler(settings=Settings(device=args.device, precision="fp32"))
    fn = frame_upscaler(upscaler, args.scale, model=args.model)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {args.device}; "
          f"{args.model} {args.scale}x on {args.size[0]}x{args.size[1]}, {args.frames} frames; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        depth_rows(Path(folder), fn, args)
        segment_rows(Path(folder), fn, upscaler, args.model, args)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
