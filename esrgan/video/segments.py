"""A clip in keyframe-aligned segments: each upscaled and encoded into its own file (by any process,
in any order, again after a crash), then joined losslessly into the result, the source's sound and
subtitles muxed in at the join. Nothing is encoded twice.

    info = probe(src)
    segments = plan_segments(info)                      # cut at the source's keyframes
    for segment in segments:                            # skip the ones already done
        upscale_segment(info, segment, folder / segment.file_name, VideoWork(upscale_frame, scale, options))
    join_segments(info, [folder / s.file_name for s in segments], dst, options)

A segment's encode starts from a fresh encoder on the same settings, and x264 with a fixed thread
count is deterministic, so re-encoding a segment gives the same bytes, and a resumed job joins into
the file an uninterrupted one would have written.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from esrgan.video.errors import SegmentError
from esrgan.video.options import EncodeOptions, VideoWork
from esrgan.video.probe import VideoInfo
from esrgan.video.result import VideoResult, check_output, differences, output_size
from esrgan.video.streams import Passthrough, PictureFormat, add_video_stream, atomic_output, plan_streams
from esrgan.video.transcode import run_pipeline

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SECONDS = 10.0
DEFAULT_PREVIEW_FRAMES = 24
# MP4 keeps a multiple of the time base (Matroska would round to milliseconds) and holds every codec.
SEGMENT_MUXER = "mp4"
SEGMENT_SUFFIX = ".mp4"


@dataclass(frozen=True)
class Segment:
    """Pictures ``start_pts <= pts < end_pts`` (None: to the end) of a clip; ``start_pts`` is a keyframe.

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


def plan_segments(info: VideoInfo, seconds: float = DEFAULT_SEGMENT_SECONDS) -> list[Segment]:
    """Cut a clip at the first keyframe at or after every ``seconds``; a clip with fewer keyframes
    has fewer (longer) segments. The same clip and ``seconds`` always give the same plan."""
    if seconds <= 0:
        raise ValueError(f"segment length must be positive, not {seconds}")
    step = round(seconds / info.time_base)
    cuts = [info.pts[0]]
    for key in info.keyframes:
        if key >= cuts[-1] + step:
            cuts.append(key)
    bounds = [*cuts, None]
    segments = []
    for i, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        frames = sum(1 for p in info.pts if p >= start and (end is None or p < end))
        segments.append(Segment(i, len(cuts), start, end, frames, float((start - info.pts[0]) * info.time_base)))
    return segments


def preview_segment(info: VideoInfo, frames: int = DEFAULT_PREVIEW_FRAMES) -> Segment:
    """The clip's first ``frames`` pictures as a segment: `upscale_segment` makes a quick preview of
    them (no sound) while the whole clip waits its turn."""
    frames = max(1, min(frames, info.frames))
    end = info.pts[frames] if frames < info.frames else None
    return Segment(0, 1, info.pts[0], end, frames, 0.0)


def upscale_segment(info: VideoInfo, segment: Segment, dst: str | Path, work: VideoWork) -> int:
    """Upscale and encode one segment's pictures (no sound) into ``dst``, atomically; returns its
    frame count. Progress (``work.progress``) counts this segment's frames. Raises as `upscale_video`."""
    work.options.validate()
    _, size = check_output(info, work.scale, work.limits)
    started = time.perf_counter()
    with atomic_output(Path(dst)) as tmp, av.open(str(info.path)) as source:
        with av.open(str(tmp), "w", format=SEGMENT_MUXER) as out:
            video = add_video_stream(out, PictureFormat.of(info, *size), work.options)
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
    options.validate()
    paths = [Path(p) for p in parts]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SegmentError(f"segments missing: {', '.join(missing)}")
    width, height, frames = _check_parts(paths)
    if frames != info.frames:
        raise SegmentError(f"the segments hold {frames} frames; the clip has {info.frames}")
    plans = plan_streams(info, options)
    dst = Path(dst)
    with atomic_output(dst) as tmp, av.open(str(info.path)) as source:
        with av.open(str(tmp), "w", format=options.container_spec.muxer) as out:
            with av.open(str(paths[0])) as first:
                video = out.add_stream_from_template(first.streams.video[0])
            video.time_base = info.time_base
            if info.rotation:
                video.set_display_rotation(info.rotation)
            passthrough = Passthrough(out, source, plans)
            streams = [source.streams[i] for i in sorted(passthrough.indices)]
            items = heapq.merge(_part_packets(paths), _source_items(source, streams, passthrough), key=_when)
            for item in items:
                if isinstance(item, av.Packet) and item.stream.type == "video":  # a part's
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
