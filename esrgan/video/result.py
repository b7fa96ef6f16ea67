"""What a video run writes and says: the output size (rounded to even for yuv420p), the checks of
it against the limits, and the result's facts, including what could not be kept of the source."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

from esrgan.models import registry
from esrgan.video.errors import VideoTooLargeError
from esrgan.video.options import EncodeOptions, VideoLimits
from esrgan.video.probe import VideoInfo

MATROSKA_TICKS_PER_SECOND = 1000  # Matroska and WebM keep milliseconds


@dataclass(frozen=True)
class VideoResult:
    """What was written, in facts a person or a page can show.

    Attributes:
        path: The output file.
        frames: Pictures written (equal to the source's).
        frame_rate: The source's average rate, kept (None for a variable rate without one).
        time_base: The source's time base; every timestamp was kept in it.
        duration: Seconds, first picture to the end of the last.
        width, height: Output size.
        source_width, source_height: Input size.
        scale: The asked scale.
        codec, container, crf: How it was encoded.
        rounded_to_even: The exact size was odd and was cut by one pixel to even (yuv420p needs it).
        exact_size: The size before rounding.
        streams: What happened to each sound and subtitle stream, in words.
        transcoded: Whether any of them was not copied bit for bit.
        notes: What differs from the source, in words (rounding, bit depth, pixel aspect).
        seconds: Wall time.
    """

    path: Path
    frames: int
    frame_rate: Fraction | None
    time_base: Fraction
    duration: float
    width: int
    height: int
    source_width: int
    source_height: int
    scale: float
    codec: str
    container: str
    crf: int
    rounded_to_even: bool
    exact_size: tuple[int, int]
    streams: tuple[str, ...]
    transcoded: bool
    notes: tuple[str, ...]
    seconds: float

    def as_dict(self) -> dict:
        facts = asdict(self)
        facts.update(path=str(self.path), time_base=str(self.time_base),
                     frame_rate=str(self.frame_rate) if self.frame_rate else None)
        return facts


def output_size(width: int, height: int, scale: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """The exact ``scale``x size and the size written: each side cut down to even (yuv420p)."""
    exact = registry.output_size(width, height, scale)
    even = (max(2, exact[0] // 2 * 2), max(2, exact[1] // 2 * 2))
    return exact, even


def check_output(info: VideoInfo, scale: float, limits: VideoLimits) -> tuple[tuple[int, int], tuple[int, int]]:
    """The exact and written output sizes; raises VideoTooLargeError over ``limits.max_output_pixels``."""
    exact, even = output_size(info.width, info.height, registry.check_outscale(scale))
    if even[0] * even[1] > limits.max_output_pixels:
        raise VideoTooLargeError(
            f"a {scale:g}x result of this {info.width}x{info.height} clip would be {even[0]}x{even[1]} a frame; "
            f"the limit is {limits.max_output_pixels / 1e6:.1f} MP: choose a smaller scale")
    return exact, even


def differences(info: VideoInfo, options: EncodeOptions, exact: tuple[int, int],
                size: tuple[int, int]) -> tuple[str, ...]:
    """What the result cannot keep of the source, said plainly."""
    notes = []
    pix_fmt = options.pix_fmt(info.bits)
    if size != exact:
        notes.append(f"the exact size {exact[0]}x{exact[1]} was cut to {size[0]}x{size[1]}: "
                     f"{pix_fmt} needs even sides")
    written = av.VideoFormat(pix_fmt).components[0].bits
    if info.bits > written:
        notes.append(f"the {info.bits}-bit source was written with {written} bits ({pix_fmt}): {options.codec} "
                     "was asked; choose hevc, av1 or prores to keep them")
    if info.sample_aspect_ratio and options.container != "mp4" and options.codec != "h264":
        notes.append(f"the pixel aspect {info.sample_aspect_ratio} is not kept: {options.container.upper()} "
                     f"with {options.codec} does not store it here; choose mp4")
    if options.container != "mp4" and (info.time_base * MATROSKA_TICKS_PER_SECOND).denominator != 1:
        notes.append(f"timestamps were rounded to the millisecond: {options.container.upper()} keeps no finer "
                     "time; choose mp4 to keep them exactly")
    return tuple(notes)
