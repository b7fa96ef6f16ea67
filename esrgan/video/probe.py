"""What a media file is, read before any work: video or animated image, its streams, frames,
timestamps, rotation and colour, checked against the limits (each refusal a typed error)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
from PIL import Image, UnidentifiedImageError

from esrgan.video.errors import (
    DamagedVideoError,
    NotAVideoError,
    NoVideoStreamError,
    UnsupportedCodecError,
    VideoTooLargeError,
    VideoTooLongError,
)
from esrgan.video.hdr import HdrMetadata, hdr_of
from esrgan.video.opening import declared_size, file_head, looks_like_video, open_media
from esrgan.video.options import DEFAULT_MAX_INPUT_PIXELS, VideoLimits

MediaKind = Literal["image", "animation", "video"]
ANIMATED_FORMATS = {"GIF": "gif", "WEBP": "webp", "PNG": "apng"}
# FFmpeg reads still images as one-frame "videos": those demuxers mean "an image, not a clip".
IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "apng", "webp")
TRUNCATION_SLACK_S = 0.25  # a header may round its duration; more missing than this is damage


@dataclass(frozen=True)
class Colour:
    """Colour metadata as FFmpeg's enums (2 = unspecified; range 1 = limited "tv", 2 = full "pc")."""

    primaries: int = 2
    transfer: int = 2
    matrix: int = 2
    range: int = 0


@dataclass(frozen=True)
class StreamInfo:
    """A stream beside the picture: sound, subtitles, data or attachments."""

    index: int
    kind: str
    codec: str
    language: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    """A probed clip.

    Attributes:
        path: The file.
        container: FFmpeg's demuxer name, e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"``.
        codec: Decoder name of the picture stream.
        video_index: Index of the picture stream among the file's streams.
        width, height: Coded picture size (before rotation).
        time_base: The picture stream's time base (every timestamp is in it).
        frame_rate: Average frame rate, or None when the file does not say.
        frames: Number of pictures (counted packet by packet, not taken from the header).
        duration: Seconds from the first picture's start to the last one's end.
        rotation: Display rotation in degrees, as the first frame carries it (0, 90, 180, -90).
        colour: Primaries, transfer, matrix and range of the pictures.
        sample_aspect_ratio: Pixel aspect ratio, or None when square or unknown.
        pix_fmt: Decoded pixel format, e.g. ``"yuv420p"``.
        streams: The other streams.
        pts: Every picture's timestamp, in presentation order.
        keyframes: Timestamps of the pictures a decoder can start at.
        hdr: The mastering display and content light level the first frame carries, if any.
    """

    path: Path
    container: str
    codec: str
    video_index: int
    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None
    frames: int
    duration: float
    rotation: int
    colour: Colour
    sample_aspect_ratio: Fraction | None
    pix_fmt: str
    streams: tuple[StreamInfo, ...]
    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    hdr: HdrMetadata | None = None

    @property
    def bits(self) -> int:
        """Bits per sample of the decoded pictures (8, 10, 12...)."""
        return av.VideoFormat(self.pix_fmt).components[0].bits if self.pix_fmt else 8

    @property
    def end_pts(self) -> int:
        """The timestamp just after the last picture (its start plus one frame's length)."""
        return self.pts[-1] + self.frame_ticks

    @functools.cached_property
    def frame_ticks(self) -> int:
        """One frame's length in ticks of the time base (the median step between pictures)."""
        steps = sorted(b - a for a, b in zip(self.pts, self.pts[1:], strict=False))
        if steps:
            return max(1, steps[len(steps) // 2])
        if self.frame_rate:
            return max(1, round(1 / (self.frame_rate * self.time_base)))
        return 1


def media_kind(path: str | Path, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> MediaKind:
    """Whether a file is a still image, an animated image (GIF, WebP, APNG) or a video, by content; a
    broken video container is a video (`probe` says what is wrong with it). No picture over
    ``max_pixels`` is decoded to find out.

    Raises:
        NotAVideoError: Neither an image nor a media file FFmpeg can read.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.format in ANIMATED_FORMATS and getattr(image, "n_frames", 1) > 1:
                return "animation"
            return "image"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    try:
        with open_media(path, max_pixels) as container:  # FFmpeg's image readers (by the name): an image
            return "image" if any(m in container.format.name for m in IMAGE_DEMUXERS) else "video"
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        if looks_like_video(file_head(path)):
            return "video"
        raise NotAVideoError(f"{path.name} is neither a video nor an image we can read ({_reason(exc)})") from exc


def probe(path: str | Path, limits: VideoLimits = VideoLimits(), name: str | None = None) -> VideoInfo:
    """Read a clip's facts and check them against ``limits``, cheaply: the header, every packet's
    timestamp (no decoding), and the first frame. No picture larger than ``limits.max_input_pixels``
    is ever decoded (`esrgan.video.opening`). Refusals call the file ``name`` (the name it was sent
    under; default: the path's).

    Raises:
        NotAVideoError: Not a media file, or a still image.
        NoVideoStreamError: No picture stream (sound only).
        UnsupportedCodecError: A picture codec not in ``limits.decoders``.
        VideoTooLongError, VideoTooLargeError: Over a limit.
        DamagedVideoError: A broken container, or the first frame does not decode.
    """
    path = Path(path)
    name = name or path.name
    try:
        container = open_media(path, limits.max_input_pixels)
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        if looks_like_video(file_head(path)):
            raise DamagedVideoError(f"{name} is a damaged video: {_reason(exc)}", frame=0) from exc
        raise NotAVideoError(f"{name} is not a video we can read ({_reason(exc)})") from exc
    with container:
        fmt = container.format.name
        if any(marker in fmt for marker in IMAGE_DEMUXERS):
            raise NotAVideoError(f"{name} is a still or animated image ({fmt}), not a video")
        pictures = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not pictures:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise NoVideoStreamError(f"{name} holds no picture ({kinds}): upload a video")
        stream = pictures[0]
        _check_header(name, container, stream, limits)
        pts, keyframes = _scan(name, container, stream, limits)
        if not pts:
            raise DamagedVideoError(f"{name} is a damaged video: its picture stream holds no frame", frame=0)
        first = _first_frame(path, name, stream.index, limits.max_input_pixels)
        others = tuple(StreamInfo(s.index, s.type, _codec_name(s), s.language)
                       for s in container.streams if s.index != stream.index)
        cc = stream.codec_context
        info = VideoInfo(
            path=path, container=fmt, codec=cc.codec.canonical_name, video_index=stream.index,
            width=cc.width, height=cc.height, time_base=stream.time_base,
            frame_rate=stream.average_rate or stream.guessed_rate or None, frames=len(pts), duration=0.0,
            rotation=int(first.rotation),
            colour=Colour(first.color_primaries, first.color_trc, first.colorspace, first.color_range),
            sample_aspect_ratio=_sar(stream), pix_fmt=first.format.name, streams=others,
            pts=tuple(pts), keyframes=tuple(keyframes), hdr=hdr_of(first),
        )
    return replace(info, duration=float((info.end_pts - info.pts[0]) * info.time_base))


def _check_header(name: str, container, stream, limits: VideoLimits) -> None:
    codec = stream.codec_context.codec.canonical_name
    if codec not in limits.decoders:
        raise UnsupportedCodecError(f"{name} is in the {codec} video codec, which we do not take; "
                                    f"use one of {', '.join(sorted(limits.decoders))}")
    seconds = _header_seconds(container, stream)
    if seconds is not None and seconds > limits.max_seconds:
        raise VideoTooLongError(f"{name} lasts {seconds:.1f} s; the limit is {limits.max_seconds:g} s: "
                                "cut it first")
    declared_size(stream, limits.max_input_pixels, name)


def _header_seconds(container, stream) -> float | None:
    """The length the header declares: the stream's, or the file's from its first timestamp (some
    muxers give the end time there: a clip starting at 1 h is not 1 h long)."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return (container.duration - (container.start_time or 0)) / av.time_base
    return None


def _scan(name: str, container, stream, limits: VideoLimits) -> tuple[list[int], list[int]]:
    """Every picture packet's timestamp (sorted into presentation order) and the keyframes'."""
    pts: list[int] = []
    keyframes: list[int] = []
    last = None
    rate = stream.average_rate or stream.guessed_rate
    step = max(1, round(1 / (rate * stream.time_base))) if rate and stream.time_base else 1
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:  # raw streams carry no timestamps: count frames one tick apart
                stamp = (last + step) if last is not None else 0
            last = stamp
            pts.append(stamp)
            if packet.is_keyframe:
                keyframes.append(stamp)
            if len(pts) > limits.max_frames:
                raise VideoTooLargeError(f"{name} has more than {limits.max_frames} "
                                         "frames, the limit: cut it first")
    except av.error.FFmpegError as exc:
        raise DamagedVideoError(f"{name} is a damaged video after packet {len(pts)} ({_reason(exc)})",
                                frame=len(pts)) from exc
    pts.sort()
    seconds = float((pts[-1] - pts[0]) * stream.time_base) if pts else 0.0
    if seconds > limits.max_seconds:
        raise VideoTooLongError(f"{name} lasts {seconds:.1f} s; the limit is {limits.max_seconds:g} s: cut it first")
    _check_complete(name, stream, pts, seconds)
    return pts, sorted(keyframes)


def _check_complete(name: str, stream, pts: list[int], seconds: float) -> None:
    """A file cut short (a failed upload or copy) still opens: its header promises more frames, or a
    longer picture stream, than its packets hold."""
    if stream.frames and len(pts) < stream.frames:
        raise DamagedVideoError(f"{name} is a damaged video (truncated?): frame {len(pts) + 1} of {stream.frames} "
                                "is missing", frame=len(pts))
    promised = _stream_seconds(stream)
    step = float((pts[1] - pts[0]) * stream.time_base) if len(pts) > 1 else 0.0
    if promised is not None and promised - seconds > max(TRUNCATION_SLACK_S, 3 * step):
        raise DamagedVideoError(f"{name} is a damaged video (truncated?): its pictures stop at {seconds:.2f} s of "
                                f"{promised:.2f} s, after frame {len(pts)}", frame=len(pts))


def _stream_seconds(stream) -> float | None:
    """The picture stream's length as its header says (Matroska keeps it in a DURATION tag)."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # where the stream ends: less its start is its length
    start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    try:
        hours, minutes, rest = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(rest) - start
    except (AttributeError, ValueError):
        return None


def _first_frame(path: Path, name: str, index: int, max_pixels: int) -> av.VideoFrame:
    try:
        with open_media(path, max_pixels) as container:
            for frame in container.decode(container.streams[index]):
                return frame
    except av.error.FFmpegError as exc:
        raise DamagedVideoError(f"{name} is a damaged video: its first frame does not decode ({_reason(exc)})",
                                frame=0) from exc
    raise DamagedVideoError(f"{name} is a damaged video: no frame decodes", frame=0)


def _sar(stream) -> Fraction | None:
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar and sar != 1 else None


def _codec_name(stream) -> str:
    try:
        return stream.codec_context.codec.canonical_name
    except (AttributeError, av.error.FFmpegError):
        return "unknown"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
