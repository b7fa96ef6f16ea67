"""The output side: which streams go where (copied bit for bit, transcoded, or refused), the video
encoder's set-up (timestamps, rotation, colour, pixel aspect), the muxer that writes frames and
copied packets as they come, and the atomic output file."""

from __future__ import annotations

import errno
import functools
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av

from esrgan.errors import OutputPathError, StorageFullError
from esrgan.io.atomic import new_file_mode
from esrgan.video.errors import IncompatibleStreamError
from esrgan.video.hdr import HdrMetadata
from esrgan.video.options import CONTAINERS, EncodeOptions
from esrgan.video.probe import Colour, VideoInfo

TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"})
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
OPUS_RATE = 48000


@dataclass(frozen=True)
class StreamPlan:
    """What happens to one sound or subtitle stream.

    Attributes:
        index: The stream's index in the source.
        kind: ``"audio"``, ``"subtitle"``, ``"data"`` or ``"attachment"``.
        codec: Its codec in the source.
        action: ``"copy"`` (packets remuxed bit for bit), ``"transcode"`` or ``"drop"``.
        target: The encoder of a transcode.
        reason: Why it is not copied, in words (empty for a copy).
    """

    index: int
    kind: str
    codec: str
    action: Literal["copy", "transcode", "drop"]
    target: str | None = None
    reason: str = ""

    def describe(self) -> str:
        what = f"{self.kind} #{self.index} ({self.codec})"
        if self.action == "copy":
            return f"{what} copied"
        if self.action == "transcode":
            return f"{what} transcoded to {self.target}: {self.reason}"
        return f"{what} dropped: {self.reason}"


@functools.cache
def container_codecs(container: str) -> frozenset[str]:
    """Codecs FFmpeg's muxer for ``container`` (mp4, mkv, webm) can hold."""
    with av.open(io.BytesIO(), "w", format=CONTAINERS[container].muxer) as probe:
        return frozenset(probe.supported_codecs)


def plan_streams(info: VideoInfo, options: EncodeOptions) -> list[StreamPlan]:
    """Decide each non-picture stream's fate before any work.

    Raises:
        IncompatibleStreamError: A stream the container cannot hold, with ``options.incompatible ==
            "refuse"``, or one that cannot be transcoded (bitmap subtitles).
    """
    holds = container_codecs(options.container)
    spec = options.container_spec
    name = options.container.upper()
    plans = []
    for stream in info.streams:
        if stream.kind not in ("audio", "subtitle"):
            plans.append(StreamPlan(stream.index, stream.kind, stream.codec, "drop",
                                    reason=f"{stream.kind} streams are not carried over"))
            continue
        if stream.codec in holds:
            plans.append(StreamPlan(stream.index, stream.kind, stream.codec, "copy"))
            continue
        why = f"{name} cannot hold {stream.codec}"
        if stream.kind == "subtitle" and stream.codec not in TEXT_SUBTITLES:
            raise IncompatibleStreamError(f"{why} subtitles (stream #{stream.index}), and bitmap subtitles "
                                          "cannot be converted: choose mkv")
        if options.incompatible == "refuse":
            raise IncompatibleStreamError(f"{why} ({stream.kind} stream #{stream.index}): choose mkv, "
                                          "or allow transcoding that stream")
        target = spec.audio_fallback if stream.kind == "audio" else spec.subtitle_fallback
        plans.append(StreamPlan(stream.index, stream.kind, stream.codec, "transcode", target, why))
    return plans


@contextmanager
def atomic_output(dst: Path) -> Iterator[Path]:
    """A temporary file beside ``dst`` that replaces it only when the block ends without error; on any
    error (cancel included) it is deleted.

    Raises:
        OutputPathError: The folder does not exist (checked first).
        StorageFullError: The disk filled up (nothing left behind).
    """
    if not dst.parent.is_dir():
        raise OutputPathError(f"the output folder {dst.parent} does not exist")
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.fchmod(fd, new_file_mode())  # the result's permissions: a new file's, not mkstemp's 0600
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dst)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise StorageFullError(f"no space left to write {dst.name}; free some disk space") from exc
        raise


@dataclass(frozen=True)
class PictureFormat:
    """How the upscaled picture stream is stamped: what a player needs to show it as the source."""

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None
    colour: Colour
    sample_aspect_ratio: Fraction | None
    rotation: int
    bits: int = 8
    hdr: HdrMetadata | None = None

    @classmethod
    def of(cls, info: VideoInfo, width: int, height: int) -> PictureFormat:
        return cls(width, height, info.time_base, info.frame_rate, info.colour, info.sample_aspect_ratio,
                   info.rotation, info.bits, info.hdr)


def add_video_stream(out: av.container.OutputContainer, picture: PictureFormat,
                     options: EncodeOptions) -> av.VideoStream:
    """The encoder stream: source time base (every timestamp kept), rate, depth (10 bits from a
    deeper source where the codec has them), colour tags, HDR metadata, pixel aspect and display
    rotation. ``options`` must name its codec (`EncodeOptions.for_depth`)."""
    spec = options.codec_spec
    settings = spec.encoder_options(options.effective_crf, options.effective_preset)
    if spec.params_option is not None:
        settings[spec.params_option] = ":".join(encoder_params(spec.encoder, picture, options.threads))
    stream = out.add_stream(spec.encoder, rate=picture.frame_rate, options=settings)
    stream.width, stream.height, stream.pix_fmt = picture.width, picture.height, options.pix_fmt(picture.bits)
    context = stream.codec_context
    context.time_base = picture.time_base
    stream.time_base = picture.time_base  # a hint: MP4 keeps a multiple of it, so no timestamp is rounded
    if picture.frame_rate:
        context.framerate = picture.frame_rate
    context.thread_count = options.threads
    context.color_primaries = picture.colour.primaries
    context.color_trc = picture.colour.transfer
    context.colorspace = picture.colour.matrix
    context.color_range = picture.colour.range or 1
    if picture.sample_aspect_ratio:
        context.sample_aspect_ratio = picture.sample_aspect_ratio
        stream.sample_aspect_ratio = picture.sample_aspect_ratio
    if picture.rotation:
        stream.set_display_rotation(picture.rotation)
    return stream


def encoder_params(encoder: str, picture: PictureFormat, threads: int) -> list[str]:
    """x265's or SVT-AV1's own parameters: quiet, a fixed parallelism (so an encode gives the same
    bytes on any machine: the segments' join relies on it), and the source's HDR metadata.

    x265 runs without its thread pool (the wheel's x265 corrupts memory with one at some small
    widths: 40 or 48 pixels, measured) and without B-pictures (it leaves the decoding time of a
    short segment's pictures unset, so the same segment came out with other bytes: measured)."""
    hdr = picture.hdr
    if encoder == "libx265":
        fixed = ["pools=none", "frame-threads=1", "bframes=0", "log-level=error"]
        return fixed + (hdr.x265_params() if hdr else [])
    fixed = [f"lp={max(1, threads)}"]
    return fixed + (hdr.svtav1_params() if hdr else [])


class Passthrough:
    """The source's sound and subtitle streams in the output: packets copied, or decoded and encoded
    again when the plan says so."""

    def __init__(self, out: av.container.OutputContainer, source: av.container.InputContainer,
                 plans: list[StreamPlan]) -> None:
        self.streams: dict[int, tuple[StreamPlan, av.stream.Stream, av.stream.Stream]] = {}
        for plan in plans:
            if plan.action == "drop":
                continue
            src = source.streams[plan.index]
            if plan.action == "copy":
                dst = out.add_stream_from_template(src)
            elif plan.kind == "audio":
                rate = OPUS_RATE if plan.target == "libopus" else src.codec_context.sample_rate
                dst = out.add_stream(plan.target, rate=rate, layout=src.codec_context.layout)
            else:
                dst = out.add_stream(plan.target)
                dst.codec_context.time_base = src.time_base
                dst.codec_context.subtitle_header = _subtitle_header(src)
            dst.metadata.update({k: v for k, v in src.metadata.items() if k in ("language", "title")})
            dst.disposition = src.disposition
            self.streams[plan.index] = (plan, src, dst)

    @property
    def indices(self) -> frozenset[int]:
        return frozenset(self.streams)

    def unpack(self, packet: av.Packet) -> list:
        """In the demuxing thread (a decoder must stay in the thread that reads its packets): the
        packet itself for a copy, decoded frames or subtitles for a transcode."""
        if packet.stream_index not in self.streams:
            return []  # the demuxer's end-of-stream markers come for every stream
        plan, src, _ = self.streams[packet.stream_index]
        if plan.action == "copy":
            return [] if packet.size == 0 else [packet]
        if plan.kind == "audio":
            frames = src.codec_context.decode(packet if packet.size else None)
            return [_Decoded(plan.index, frame) for frame in frames]
        if packet.size == 0:
            return []
        subtitles = src.codec_context.decode2(packet)
        return [] if subtitles is None else [_Decoded(plan.index, subtitles, packet)]

    def write(self, out: av.container.OutputContainer, item) -> None:
        """In the muxing thread: an item `unpack` made."""
        if isinstance(item, av.Packet):
            item.stream = self.streams[item.stream_index][2]
            out.mux(item)
            return
        _, _, dst = self.streams[item.index]
        if item.packet is None:
            out.mux(dst.encode(item.content))
            return
        encoded = dst.codec_context.encode_subtitle(item.content)
        encoded.stream = dst
        encoded.pts, encoded.dts, encoded.duration = item.packet.pts, item.packet.dts, item.packet.duration
        encoded.time_base = item.packet.time_base
        out.mux(encoded)

    def flush(self, out: av.container.OutputContainer) -> None:
        for plan, _, dst in self.streams.values():
            if plan.action == "transcode" and plan.kind == "audio":
                out.mux(dst.encode(None))


@dataclass
class _Decoded:
    index: int
    content: object  # an AudioFrame, or a SubtitleSet with its packet's timing
    packet: av.Packet | None = None


def _subtitle_header(stream) -> bytes:
    """The ASS header a text-subtitle encoder needs: the source decoder's, or FFmpeg's default."""
    header = getattr(stream.codec_context, "subtitle_header", None)
    return header or DEFAULT_ASS_HEADER


DEFAULT_ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
    b"Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
    b"Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
    b"[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)
