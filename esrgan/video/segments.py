"""A clip in segments cut at any frame: each upscaled and encoded into its own file (by any process,
in any order, again after a crash), then joined losslessly into the result, the source's sound and
subtitles muxed in at the join. Nothing is encoded twice.

    info = probe(src)
    segments = plan_segments(info, seconds_per_frame)   # about DEFAULT_SEGMENT_SECONDS of work each
    for segment in segments:                            # skip the ones already done
        upscale_segment(info, segment, folder / segment.file_name, VideoWork(upscale_frame, scale, options))
    join_segments(info, [folder / s.file_name for s in segments], dst, options)

Segments do not depend on the source's keyframes: a segment's decode starts at the keyframe before
it and drops the pictures before its first (decoding is cheap next to upscaling). Each segment's
encode starts from a fresh encoder on the same settings, so every part begins with its own
keyframe, and a deterministic encoder (fixed thread count) gives the same bytes again: a resumed
job joins into the file an uninterrupted one would have written.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from esrgan.video.errors import SegmentError
from esrgan.video.options import EncodeOptions, VideoWork
from esrgan.video.probe import VideoInfo
from esrgan.video.result import VideoResult, check_output, differences, output_size
from esrgan.video.streams import Passthrough, PictureFormat, add_video_stream, atomic_output, plan_streams
from esrgan.video.transcode import run_pipeline

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SECONDS = 10.0  # of estimated work a segment (on the machine that plans it)
DEFAULT_PREVIEW_FRAMES = 24
# MP4 keeps a multiple of the time base (Matroska would round to milliseconds) and holds every codec.
SEGMENT_MUXER = "mp4"
SEGMENT_SUFFIX = ".mp4"


@dataclass(frozen=True)
class Segment:
    """Pictures ``start_pts <= pts < end_pts`` (None: to the end) of a clip, cut at any picture.

    Attributes:
        index: 0-based position.
        count: How many segments the clip has.
        start_pts, end_pts: The window, in the clip's time base.
        frames: Pictures in it.
        start: Its first picture's time in seconds.
    """

    index: int
    count: int
    start_pts: int
    end_pts: int | None
    frames: int
    start: float

    @property
    def file_name(self) -> str:
        return f"segment-{self.index:05d}-of-{self.count:05d}{SEGMENT_SUFFIX}"


def plan_segments(info: VideoInfo, seconds_per_frame: float,
                  seconds: float = DEFAULT_SEGMENT_SECONDS) -> list[Segment]:
    """Cut a clip into segments of about ``seconds`` of estimated work each, at any picture: as few
    as that allows (a clip whose whole estimate is above ``seconds`` has at least two), their
    frame counts equal to one. The same clip and figures always give the same plan; a job plans
    once and keeps it (`plan_rows`, `segments_from_rows`), since estimates change.

    Args:
        info: The clip.
        seconds_per_frame: Estimated seconds of work per picture (upscaling, here).
        seconds: Estimated work a segment should hold.
    """
    if seconds <= 0 or not seconds_per_frame >= 0:
        raise ValueError(f"segment work must be positive, not {seconds} s at {seconds_per_frame} s a frame")
    count = min(info.frames, max(1, math.ceil(info.frames * seconds_per_frame / seconds)))
    firsts = [i * info.frames // count for i in range(count)]
    return segments_from_rows(info, [[info.pts[a], info.pts[b] if b < info.frames else None, b - a]
                                     for a, b in zip(firsts, [*firsts[1:], info.frames], strict=True)])


def plan_rows(segments: list[Segment]) -> list[list]:
    """A plan as plain data (JSON): ``[start_pts, end_pts, frames]`` per segment."""
    return [[s.start_pts, s.end_pts, s.frames] for s in segments]


def segments_from_rows(info: VideoInfo, rows: list[list]) -> list[Segment]:
    """The segments of a plan `plan_rows` wrote, for ``info``'s clip."""
    return [Segment(i, len(rows), int(start), None if end is None else int(end), int(frames),
                    float((int(start) - info.pts[0]) * info.time_base))
            for i, (start, end, frames) in enumerate(rows)]


def preview_segment(info: VideoInfo, frames: int = DEFAULT_PREVIEW_FRAMES) -> Segment:
    """The clip's first ``frames`` pictures as a segment: `upscale_segment` makes a quick preview of
    them (no sound) while the whole clip waits its turn."""
    frames = max(1, min(frames, info.frames))
    end = info.pts[frames] if frames < info.frames else None
    return Segment(0, 1, info.pts[0], end, frames, 0.0)


def upscale_segment(info: VideoInfo, segment: Segment, dst: str | Path, work: VideoWork) -> int:
    """Upscale and encode one segment's pictures (no sound) into ``dst``, atomically; returns its
    frame count. Progress (``work.progress``) counts this segment's frames. Raises as `upscale_video`."""
    _, size = check_output(info, work.scale, work.limits)
    options = work.options.validate().for_depth(info.bits, min(size))
    started = time.perf_counter()
    with atomic_output(Path(dst)) as tmp, av.open(str(info.path)) as source:
        with av.open(str(tmp), "w", format=SEGMENT_MUXER, options=_segment_muxer_options(info)) as out:
            video = add_video_stream(out, PictureFormat.of(info, *size), options)
            frames = run_pipeline(source, info, out, video, None, work.upscale_frame, size,
                                  window=(segment.start_pts, segment.end_pts), progress=work.progress,
                                  cancelled=work.cancelled)
    log.info("segment %d/%d of %s: %d frames in %.1fs", segment.index + 1, segment.count, info.path.name,
             frames, time.perf_counter() - started)
    return frames


def join_segments(
    info: VideoInfo,
    parts: Sequence[str | Path],
    dst: str | Path,
    options: EncodeOptions = EncodeOptions(),
    scale: float | None = None,
) -> VideoResult:
    """Join encoded segments, in order, into ``dst`` with the source's sound and subtitles (copied,
    or transcoded as `upscale_video` would); packets are copied, never encoded again.

    Raises:
        SegmentError: A part is missing, was encoded with other settings, or the frames do not add
            up to the clip's.
        IncompatibleStreamError, OutputPathError, StorageFullError.
    """
    started = time.perf_counter()
    options = options.validate()
    paths = [Path(p) for p in parts]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SegmentError(f"segments missing: {', '.join(missing)}")
    width, height, frames = _check_parts(paths)
    options = options.for_depth(info.bits, min(width, height))
    if frames != info.frames:
        raise SegmentError(f"the segments hold {frames} frames; the clip has {info.frames}")
    plans = plan_streams(info, options)
    dst = Path(dst)
    with atomic_output(dst) as tmp, av.open(str(info.path)) as source:
        with av.open(str(tmp), "w", format=options.container_spec.muxer) as out:
            with av.open(str(paths[0])) as first:
                # By the codec's id: a decoder may be named apart from any encoder (libdav1d).
                video = out.add_stream_from_template(first.streams.video[0], opaque=True)
            video.time_base = info.time_base
            if info.rotation:
                video.set_display_rotation(info.rotation)
            passthrough = Passthrough(out, source, plans)
            streams = [source.streams[i] for i in sorted(passthrough.indices)]
            items = heapq.merge(_part_packets(paths), _source_items(source, streams, passthrough), key=_when)
            last_dts = None
            for item in items:
                if isinstance(item, av.Packet) and item.stream.type == "video":  # a part's
                    last_dts = _after(item, last_dts)
                    item.stream = video
                    out.mux(item)
                else:
                    passthrough.write(out, item)
            passthrough.flush(out)
    exact = None if scale is None else output_size(info.width, info.height, scale)[0]
    return VideoResult(
        path=dst, frames=frames, frame_rate=info.frame_rate, time_base=info.time_base, duration=info.duration,
        width=width, height=height, source_width=info.width, source_height=info.height, scale=scale or 0,
        codec=options.codec, container=options.container, crf=options.effective_crf,
        rounded_to_even=exact is not None and exact != (width, height), exact_size=exact or (width, height),
        streams=tuple(p.describe() for p in plans), transcoded=any(p.action != "copy" for p in plans),
        notes=differences(info, options, exact or (width, height), (width, height)),
        seconds=round(time.perf_counter() - started, 3),
    )


def _segment_muxer_options(info: VideoInfo) -> dict[str, str]:
    """The part's edit list (where its first picture starts) in the clip's own ticks: in MP4's
    default milliseconds, a segment starting between two milliseconds would come back moved."""
    ticks = info.time_base.denominator  # every timestamp is a whole number of these
    return {"movie_timescale": str(ticks)} if ticks < 2**31 else {}


def _check_parts(paths: list[Path]) -> tuple[int, int, int]:
    """(width, height, frames in all); every part must come from the same encoder settings."""
    signature = None
    frames = 0
    for path in paths:
        try:
            with av.open(str(path)) as part:
                stream = part.streams.video[0]
                context = stream.codec_context
                mine = (context.codec.canonical_name, context.width, context.height,
                        bytes(context.extradata or b""))
                frames += sum(1 for packet in part.demux(stream) if packet.size)
        except (av.error.FFmpegError, IndexError) as exc:
            raise SegmentError(f"segment {path.name} is unreadable ({exc}): encode it again") from exc
        if signature is not None and mine != signature:
            raise SegmentError(f"segment {path.name} was encoded with other settings than the first")
        signature = mine
    return signature[1], signature[2], frames


def _after(packet: av.Packet, last: Fraction | None) -> Fraction | None:
    """Move a part's packet's decoding time just after the previous part's last, where reordering
    (B-pictures: x265 holds back more than x264) starts a part before the last one ends; its
    presentation time is kept (a part starts with a keyframe presented after every earlier one).
    Returns its decoding time, in seconds."""
    if packet.dts is None:
        return last
    tick = packet.time_base
    if last is not None and packet.dts * tick <= last:
        packet.dts = math.floor(last / tick) + 1
    return packet.dts * tick


def _part_packets(paths: list[Path]) -> Iterator[av.Packet]:
    for path in paths:
        with av.open(str(path)) as part:
            for packet in part.demux(part.streams.video[0]):
                if packet.size:
                    yield packet


def _source_items(source, streams, passthrough: Passthrough) -> Iterator:
    if not streams:
        return
    for packet in source.demux(streams):
        yield from passthrough.unpack(packet)


def _when(item) -> float:
    """Seconds at which an item is due, for interleaving."""
    if isinstance(item, av.Packet):
        stamp = item.dts if item.dts is not None else item.pts
        return float(stamp * item.time_base) if stamp is not None else 0.0
    if item.packet is not None:
        return float(item.packet.pts * item.packet.time_base)
    return float(item.content.time or 0.0)
