"""Upscale a clip: decode, upscale every frame, encode as it goes, with sound and subtitles carried
over. Decoding, inference and encoding run at once (three threads joined by short queues), so at
most a few frames are ever in memory and none on disk.

The public entry is `upscale_video`; `run_pipeline` is the same machinery for one window of a clip
(a segment, cut at any picture), which `esrgan.video.segments` uses.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from esrgan.errors import Cancelled
from esrgan.tiling.steps import CancelFn, ProgressFn
from esrgan.video.errors import DamagedVideoError, VideoTooLargeError
from esrgan.video.frames import FrameFn, frame_to_rgb, rgb_to_frame
from esrgan.video.opening import pixel_ceiling
from esrgan.video.options import VideoWork
from esrgan.video.probe import VideoInfo, probe
from esrgan.video.result import VideoResult, check_output, differences
from esrgan.video.streams import (
    Passthrough,
    PictureFormat,
    add_video_stream,
    atomic_output,
    plan_streams,
)

log = logging.getLogger(__name__)

QUEUE_DEPTH = 4  # frames waiting between two stages: enough to ride out jitter, little memory
POLL_S = 0.1
# The decoder's pixel ceiling over the declared size: its buffers are padded (alignment), and a frame
# between the declared size and the ceiling is decoded, then refused by its number.
DECODE_SLACK = 4
MIN_DECODE_CEILING = 1 << 16
MAX_REORDER_FRAMES = 64  # an encoder holds back fewer pictures than this (x265 at most 16 B-frames)


def upscale_video(src: str | Path, dst: str | Path, work: VideoWork, info: VideoInfo | None = None) -> VideoResult:
    """Upscale a clip into ``dst``, sound and subtitles carried over; nothing is left at ``dst`` (nor
    beside it) unless the whole file was written.

    Args:
        src: The clip.
        dst: Where the result goes (its folder must exist).
        work: The frame function and its scale (its frames uint8 for an 8-bit clip, uint16 for a
            deeper one), the encoder's options, the limits, the callbacks.
        info: The clip's `probe`, when the caller has it already.

    Raises:
        NotAVideoError, NoVideoStreamError, UnsupportedCodecError, VideoTooLongError,
        VideoTooLargeError, IncompatibleStreamError, VideoOptionError, OutputPathError: Before work.
        DamagedVideoError: The clip turned out damaged at a frame (named in the error).
        Cancelled, StorageFullError.
    """
    started = time.perf_counter()
    options, scale = work.options, work.scale
    options.validate()
    info = info or probe(src, work.limits)
    exact, size = check_output(info, scale, work.limits)
    options = options.for_depth(info.bits, min(size))
    plans = plan_streams(info, options)
    dst = Path(dst)
    with atomic_output(dst) as tmp, av.open(str(info.path)) as source:
        with av.open(str(tmp), "w", format=options.container_spec.muxer) as out:
            video = add_video_stream(out, PictureFormat.of(info, *size), options)
            passthrough = Passthrough(out, source, plans)
            frames = run_pipeline(source, info, out, video, passthrough, work.upscale_frame, size,
                                  progress=work.progress, cancelled=work.cancelled)
    log.info("video %s: %d frames %dx%d -> %dx%d %s/%s in %.1fs", info.path.name, frames, info.width, info.height,
             *size, options.codec, options.container, time.perf_counter() - started)
    return VideoResult(
        path=dst, frames=frames, frame_rate=info.frame_rate, time_base=info.time_base, duration=info.duration,
        width=size[0], height=size[1], source_width=info.width, source_height=info.height, scale=scale,
        codec=options.codec, container=options.container, crf=options.effective_crf,
        rounded_to_even=size != exact, exact_size=exact, streams=tuple(p.describe() for p in plans),
        transcoded=any(p.action != "copy" for p in plans), notes=differences(info, options, exact, size),
        seconds=round(time.perf_counter() - started, 3),
    )


@dataclass
class _Frame:
    index: int
    pts: int
    duration: int
    rgb: np.ndarray


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def run_pipeline(
    source: av.container.InputContainer,
    info: VideoInfo,
    out: av.container.OutputContainer,
    video: av.VideoStream,
    passthrough: Passthrough | None,
    upscale_frame: FrameFn,
    size: tuple[int, int],
    window: tuple[int, int | None] = (0, None),
    progress: ProgressFn | None = None,
    cancelled: CancelFn | None = None,
) -> int:
    """Decode (thread) -> upscale (this thread) -> encode and mux (thread); returns frames written.

    ``window`` = (first pts, end pts or None) limits the work to the pictures in it (a segment): the
    source is sought to the keyframe at or before its first picture, the pictures before that are
    decoded and dropped, and only picture packets are read.
    """
    start, end = window
    expected = sum(1 for p in info.pts if p >= start and (end is None or p < end))
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(QUEUE_DEPTH)
    upscaled: queue.Queue = queue.Queue(QUEUE_DEPTH)
    decoder = threading.Thread(target=_guard, name="video-decode", daemon=True,
                               args=(decoded, stop, _decode, source, info, window, passthrough, decoded, stop))
    encoder = threading.Thread(target=_encode, name="video-encode", daemon=True,
                               args=(upscaled, stop, out, video, passthrough, info, size))
    encoder.failure = None  # type: ignore[attr-defined]
    decoder.start()
    encoder.start()
    done = 0
    try:
        while (item := _get(decoded, stop, encoder)) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            if isinstance(item, _Frame):
                if cancelled is not None and cancelled():
                    raise Cancelled("the video was cancelled")
                item.rgb = _checked(upscale_frame(item.rgb), info, size)
                done += 1
            if not _put(upscaled, item, stop):
                break
            if isinstance(item, _Frame) and progress is not None:
                progress(done, expected)
        _put(upscaled, _END, stop)
        encoder.join()
        if encoder.failure is not None:  # type: ignore[attr-defined]
            raise encoder.failure  # type: ignore[attr-defined]
    finally:
        stop.set()
        decoder.join()
        encoder.join()
    if done != expected:
        raise DamagedVideoError(f"the video ends early: frame {done + 1} of {expected} is missing or damaged",
                                frame=done)
    return done


def _checked(rgb: np.ndarray, info: VideoInfo, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < height or rgb.shape[1] < width:
        raise ValueError(f"the frame function made {rgb.shape} from a {info.width}x{info.height} frame; "
                         f"the output is {width}x{height} RGB")
    return rgb[:height, :width]


def _guard(sink: queue.Queue, stop: threading.Event, work: Callable, *args) -> None:
    try:
        work(*args)
    except BaseException as exc:  # handed to the consumer, which raises it in the caller's thread
        _put(sink, _Failure(exc), stop)


def _decode(source, info: VideoInfo, window, passthrough: Passthrough | None, sink: queue.Queue,
            stop: threading.Event) -> None:
    start, end = window
    stream = source.streams[info.video_index]
    stream.thread_type = "AUTO"
    # A picture much larger than the clip declared is never allocated (a hostile frame mid-stream).
    ceiling = pixel_ceiling(max(DECODE_SLACK * info.width * info.height, MIN_DECODE_CEILING))
    stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(ceiling)}
    others = sorted(passthrough.indices) if passthrough is not None else []
    streams = [stream] + [source.streams[i] for i in others]
    if start > info.pts[0]:
        source.seek(start, stream=stream, backward=True, any_frame=False)
    index = sum(1 for p in info.pts if p < start)
    try:
        for packet in source.demux(streams):
            if packet.stream_index != info.video_index:
                for item in passthrough.unpack(packet):
                    if not _put(sink, item, stop):
                        return
                continue
            for frame in _decoded(packet, index, info):
                if frame.is_corrupt:
                    raise DamagedVideoError(f"the video is damaged at frame {index + 1}", frame=index)
                # A raw stream's frames carry no stamps: the probe counted them one frame apart.
                pts = frame.pts if frame.pts is not None else info.pts[min(index, info.frames - 1)]
                if pts < start:
                    continue
                if end is not None and pts >= end:
                    _put(sink, _END, stop)
                    return
                rgb = frame_to_rgb(frame, info.colour, info.bits)
                item = _Frame(index, pts, frame.duration or info.frame_ticks, rgb)
                if not _put(sink, item, stop):
                    return
                index += 1
    except av.error.FFmpegError as exc:
        raise DamagedVideoError(f"the video is damaged at frame {index + 1} ({exc})", frame=index) from exc
    _put(sink, _END, stop)


def _decoded(packet: av.Packet, index: int, info: VideoInfo) -> list[av.VideoFrame]:
    """A packet's pictures; one larger than the clip's declared size is refused by its number (the
    decoder's ceiling turns it down before allocating it)."""
    try:
        frames = packet.decode()
    except av.error.ArgumentError as exc:
        raise _too_large(index, info) from exc
    if any(f.width * f.height > info.width * info.height for f in frames):
        raise _too_large(index, info)
    return frames


def _too_large(index: int, info: VideoInfo) -> VideoTooLargeError:
    return VideoTooLargeError(f"frame {index + 1} of the video is larger than its declared "
                              f"{info.width}x{info.height} frames: a damaged or hostile file")


def _encode(inbox: queue.Queue, stop: threading.Event, out, video, passthrough, info: VideoInfo,
            size: tuple[int, int]) -> None:
    me = threading.current_thread()
    pix_fmt = video.pix_fmt
    last_pts = last_dts = None
    try:
        while (item := _get(inbox, stop)) is not _END:
            if isinstance(item, _Frame):
                frame = rgb_to_frame(item.rgb, info.colour, pix_fmt)
                # A source whose stamps repeat (broken muxers) would stop the encoder: nudge by a tick.
                pts = item.pts if last_pts is None or item.pts > last_pts else last_pts + 1
                frame.pts, frame.time_base, frame.duration = pts, info.time_base, item.duration
                last_pts = pts
                last_dts = _mux_video(out, video.encode(frame), info, last_dts)
            elif item is not None:
                passthrough.write(out, item)
        _mux_video(out, video.encode(None), info, last_dts)
        if passthrough is not None:
            passthrough.flush(out)
    except BaseException as exc:
        me.failure = exc  # type: ignore[attr-defined]
        stop.set()


def _mux_video(out, packets: list[av.Packet], info: VideoInfo, last_dts: int | None) -> int | None:
    """Mux encoded pictures; a decoding time no encoder could mean (x265 leaves it unset when a
    clip ends within its reordering delay: a short segment) becomes the earliest valid one."""
    for packet in packets:
        if packet.pts is not None and (packet.dts is None or packet.dts > packet.pts
                                       or packet.dts < packet.pts - MAX_REORDER_FRAMES * info.frame_ticks):
            packet.dts = packet.pts if last_dts is None else min(packet.pts, last_dts + 1)
        last_dts = packet.dts if packet.dts is not None else last_dts
        out.mux(packet)
    return last_dts


def _put(sink: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            sink.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(source: queue.Queue, stop: threading.Event, peer: threading.Thread | None = None):
    """The next item; _END once ``stop`` is set (a failing peer's error is raised by the caller)."""
    while True:
        try:
            return source.get(timeout=POLL_S)
        except queue.Empty:
            if stop.is_set():
                if peer is not None and getattr(peer, "failure", None) is not None:
                    raise peer.failure
                return _END
