"""Media the tests write themselves with PyAV and Pillow (real FFmpeg): tiny clips of a crop window
sliding over a real photo, with an AAC tone and subtitles, and animated GIF/WebP/APNG. Shared by the
engine's, the command line's and the web's video tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from esrgan.video.probe import probe
from esrgan.video.segments import plan_rows, plan_segments
from esrgan.video.streams import DEFAULT_ASS_HEADER
from tests.conftest import dataset_image

FPS = 12
FRAMES = 30
VFR_STEPS = (100, 50, 150, 100)  # ms between frames, in turn
BT709, LIMITED = 1, 1
SUBTITLES = ((0, 800, "Hello"), (1000, 2000, "world"))  # ms


def photo() -> np.ndarray:
    return np.asarray(Image.open(dataset_image("astronaut.png")).convert("RGB"))


def write_clip(path: Path, width: int = 64, height: int = 48, vfr: bool = False, rotation: int = 0,
               subtitle: str = "mov_text", audio: bool = True, codec: str = "libx264", gop: int = 6,
               frames: int = FRAMES) -> Path:
    """A clip of a crop window sliding over a real photo, an AAC sine tone, two subtitles."""
    image = photo()
    out = av.open(str(path), "w")
    video = out.add_stream(codec, rate=FPS, options={"crf": "20", "g": str(gop)} if codec == "libx264" else {})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    context = video.codec_context
    context.time_base = Fraction(1, 1000) if vfr else Fraction(1, FPS)
    if codec == "libx264":
        context.color_primaries = context.color_trc = context.colorspace = BT709
        context.color_range = LIMITED
        context.sample_aspect_ratio = video.sample_aspect_ratio = Fraction(4, 3)
    if rotation:
        video.set_display_rotation(rotation)
    sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
    text = out.add_stream(subtitle) if subtitle else None
    if text is not None:
        text.codec_context.time_base = Fraction(1, 1000)
        text.codec_context.subtitle_header = DEFAULT_ASS_HEADER
    pts = 0
    for i in range(frames):
        crop = np.ascontiguousarray(image[i * 3 : i * 3 + height, i * 2 : i * 2 + width])
        frame = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=BT709, dst_color_range=LIMITED)
        frame.pts, frame.time_base = pts, context.time_base
        pts += VFR_STEPS[i % len(VFR_STEPS)] if vfr else 1
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if sound is not None:
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000 * frames // FPS) / 16000)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    for start, end, words in SUBTITLES if text is not None else ():
        packet = text.codec_context.encode_subtitle(
            av.subtitles.subtitle.SubtitleSet.create(text=f"0,0,Default,,0,0,0,,{words}".encode(), start=0,
                                                     end=end - start, pts=start))
        packet.stream, packet.pts, packet.dts, packet.duration = text, start, start, end - start
        packet.time_base = Fraction(1, 1000)
        out.mux(packet)
    out.close()
    return path


def write_animation(path: Path, fmt: str, delays=(100, 200, 50, 300, 120), loop=3) -> Path:
    """A 41x33 animation (one frame per delay) with a transparent corner."""
    image = np.asarray(Image.open(dataset_image("coffee.png")).convert("RGB"))
    frames = []
    for i in range(len(delays)):
        rgba = np.concatenate([image[i * 5 : i * 5 + 33, i * 4 : i * 4 + 41], np.full((33, 41, 1), 255, np.uint8)], 2)
        rgba[:10, :12, 3] = 0  # a transparent corner
        frames.append(Image.fromarray(np.ascontiguousarray(rgba), "RGBA"))
    extra = {"disposal": 2} if fmt == "GIF" else {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=list(delays), loop=loop, **extra)
    return path


def damage_frame(src: Path, dst: Path, index: int) -> Path:
    """A copy of ``src`` whose ``index``-th picture packet (in presentation order) is noise."""
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as container:
        video = sorted((p.pts, p.pos, p.size) for p in container.demux(video=0) if p.size)
    _, pos, size = video[index]
    data[pos + 8 : pos + size] = np.random.default_rng(1).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def packets(path: Path, kind: str) -> list[bytes]:
    """The stream's packets; for subtitles only those with text (the MP4 muxer writes its own empty
    mov_text samples into the gaps between subtitles)."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        found = [bytes(p) for p in container.demux(streams[0]) if p.size]
    return [p for p in found if p != b"\x00\x00"] if kind == "subtitle" else found


def halves(path: Path) -> list[list]:
    """A job's segment plan (as its record keeps it) of two equal halves of a clip, whatever this
    machine's estimates would plan."""
    info = probe(path)
    return plan_rows(plan_segments(info, seconds_per_frame=1.0, seconds=info.frames / 2))


BT2020, PQ, BT2020_NCL = 9, 16, 9  # FFmpeg's enums: primaries, transfer, matrix
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"  # P3-D65 on BT.2020, 1000 nits
MAX_CLL = (1000, 400)


def write_hdr_clip(path: Path, width: int = 64, height: int = 48, frames: int = 8) -> Path:
    """A 10-bit BT.2020/PQ HEVC clip (libx265) with mastering display and content light level: a
    smooth 16-bit gradient that drifts, so 8 bits would band it."""
    out = av.open(str(path), "w")
    params = f"master-display={MASTER_DISPLAY}:max-cll={MAX_CLL[0]},{MAX_CLL[1]}:log-level=error:pools=none"
    video = out.add_stream("libx265", rate=FPS, options={"crf": "12", "x265-params": params})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p10le"
    context = video.codec_context
    context.time_base = Fraction(1, FPS)
    context.color_primaries, context.color_trc, context.colorspace, context.color_range = BT2020, PQ, BT2020_NCL, 1
    ramp = np.linspace(0.2, 0.3, width)[None, :] + np.linspace(0, 0.05, height)[:, None]
    for i in range(frames):
        rgb = np.stack([ramp + 0.002 * i, ramp * 0.9, ramp[::-1, ::-1]], axis=2)
        pixels = np.ascontiguousarray((rgb * 65535).astype(np.uint16))
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb48le").reformat(
            format="yuv420p10le", dst_colorspace=BT2020_NCL, dst_color_range=1)
        frame.pts, frame.time_base = i, context.time_base
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    out.close()
    return path
