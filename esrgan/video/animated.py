"""Animated images (GIF, animated WebP, APNG): every frame upscaled, written as the same kind with
each frame's delay, the loop count and transparency kept, or as a video on request.

Colour goes through the frame function (the network); alpha is resampled (Lanczos), as the image
path does. Pillow writes an animation from all its frames at once, so the frames are held in memory:
`VideoLimits.max_frames` and the pixel limits bound that.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

from esrgan.errors import Cancelled
from esrgan.result import resample
from esrgan.video.errors import NotAVideoError, VideoTooLargeError, VideoTooLongError
from esrgan.video.frames import FrameFn, rgb_to_frame
from esrgan.video.options import EncodeOptions, VideoLimits, VideoWork
from esrgan.video.probe import ANIMATED_FORMATS, Colour
from esrgan.video.result import output_size
from esrgan.video.streams import PictureFormat, add_video_stream, atomic_output

AnimationOutput = Literal["same", "video"]
PILLOW_FORMATS = {"gif": "GIF", "webp": "WEBP", "apng": "PNG"}
DEFAULT_DELAY_MS = 100  # what browsers show for a frame without a delay
GIF_ALPHA_CUT = 128  # GIF transparency is on or off
WEBP_QUALITY = 90
MS = Fraction(1, 1000)
SRGB_AS_VIDEO = Colour(primaries=1, transfer=13, matrix=1, range=1)  # BT.709 primaries, sRGB curve
BACKGROUND = 255  # transparent pixels become white in a video, as in the image path's JPEG


@dataclass(frozen=True)
class AnimationInfo:
    """A probed animated image: kind (gif, webp, apng), size, per-frame delays in ms, loop count
    (0 = forever, None = play once) and whether any frame has transparency."""

    path: Path
    kind: str
    width: int
    height: int
    frames: int
    delays: tuple[int, ...]
    loop: int | None
    has_alpha: bool

    @property
    def duration(self) -> float:
        return sum(self.delays) / 1000


@dataclass(frozen=True)
class AnimationResult(AnimationInfo):
    """What was written: the facts of `AnimationInfo` as kept in the output, whether the size was
    rounded to even (a video output only), and the seconds it took."""

    rounded_to_even: bool
    seconds: float

    def as_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def probe_animation(path: str | Path, limits: VideoLimits = VideoLimits(), name: str | None = None) -> AnimationInfo:
    """Read an animated image's facts, checked against ``limits`` (refusals call the file ``name``,
    the name it was sent under; default: the path's).

    Raises:
        NotAVideoError: Not an animated GIF, WebP or PNG.
        VideoTooLargeError, VideoTooLongError: Over a limit.
    """
    path = Path(path)
    name = name or path.name
    try:
        with Image.open(path) as image:
            kind = ANIMATED_FORMATS.get(image.format or "")
            width, height = image.size  # from the header: checked before any frame is read
            if width * height > limits.max_input_pixels:
                raise VideoTooLargeError(f"{name} is {width}x{height} ({width * height / 1e6:.1f} MP a frame); "
                                         f"the limit is {limits.max_input_pixels / 1e6:.1f} MP")
            frames = getattr(image, "n_frames", 1)
            if kind is None or frames < 2:
                raise NotAVideoError(f"{name} is not an animated GIF, WebP or PNG")
            if frames > limits.max_frames:
                raise VideoTooLargeError(f"{name} is {frames} frames of {width}x{height}; the limits are "
                                         f"{limits.max_frames} frames of {limits.max_input_pixels / 1e6:.1f} MP")
            delays, alpha = [], False
            for index in range(frames):
                image.seek(index)
                image.load()  # WebP updates a frame's delay only when it is loaded
                delays.append(int(image.info.get("duration") or DEFAULT_DELAY_MS))
                alpha = alpha or _has_alpha(image)
            loop = image.info.get("loop")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise NotAVideoError(f"{name} is not an animation we can read ({exc})") from exc
    info = AnimationInfo(path, kind, width, height, frames, tuple(delays), loop, alpha)
    if info.duration > limits.max_seconds:
        raise VideoTooLongError(f"{name} lasts {info.duration:.1f} s; the limit is {limits.max_seconds:g} s")
    return info


def upscale_animation(src: str | Path, dst: str | Path, work: VideoWork,
                      output: AnimationOutput = "same") -> AnimationResult:
    """Upscale every frame of an animated image into ``dst``: the same kind (``output="same"``) with
    delays, loop count and transparency kept, or a video (``"video"``: ``work.options`` say which; each
    frame's delay becomes its timestamp; transparency becomes white). Written atomically.

    Raises:
        NotAVideoError, VideoTooLargeError, VideoTooLongError, VideoOptionError: Before work.
        Cancelled, OutputPathError, StorageFullError.
    """
    started = time.perf_counter()
    scale, options, limits, progress = work.scale, work.options, work.limits, work.progress
    info = probe_animation(src, limits)
    exact, even = output_size(info.width, info.height, scale)
    size = even if output == "video" else exact
    if size[0] * size[1] > limits.max_output_pixels:
        raise VideoTooLargeError(f"a {scale:g}x result would be {size[0]}x{size[1]} a frame; the limit is "
                                 f"{limits.max_output_pixels / 1e6:.1f} MP")
    if output == "video":
        options = options.validate().for_depth(8)
    frames = []
    with Image.open(info.path) as image:
        for index in range(info.frames):
            if work.cancelled is not None and work.cancelled():
                raise Cancelled("the animation was cancelled")
            image.seek(index)
            frames.append(_upscale_rgba(np.asarray(image.convert("RGBA")), work.upscale_frame, exact))
            if progress is not None:
                progress(index + 1, info.frames)
    with atomic_output(Path(dst)) as tmp:
        if output == "video":
            _write_video(tmp, frames, info, even, options)
        else:
            _write_same(tmp, frames, info)
    kind = options.container if output == "video" else info.kind
    return AnimationResult(Path(dst), kind, *size, info.frames, info.delays, info.loop,
                           info.has_alpha and output != "video", size != exact,
                           round(time.perf_counter() - started, 3))


def _has_alpha(image: Image.Image) -> bool:
    if "transparency" in image.info or image.mode in ("RGBA", "LA", "PA"):
        return bool((np.asarray(image.convert("RGBA"))[..., 3] < 255).any())
    return False


def _upscale_rgba(rgba: np.ndarray, upscale_frame: FrameFn, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 4) uint8 -> (H', W', 4) uint8 at ``size``: colour by the network, alpha by Lanczos."""
    width, height = size
    rgb = upscale_frame(np.ascontiguousarray(rgba[..., :3]))[:height, :width]
    alpha = rgba[..., 3:]
    if (alpha == 255).all():
        return np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)
    resized = resample(alpha.astype(np.float32) / 255.0, size)
    return np.concatenate([rgb, np.clip(resized * 255 + 0.5, 0, 255).astype(np.uint8)], axis=2)


def _write_same(path: Path, frames: list[np.ndarray], info: AnimationInfo) -> None:
    images = [Image.fromarray(frame, "RGBA") for frame in frames]
    if info.kind == "gif":
        images = [_gif_frame(frame) for frame in frames]
    extra: dict = {"loop": info.loop} if info.loop is not None else {}
    if info.kind == "webp":
        extra |= {"quality": WEBP_QUALITY, "alpha_quality": 100, "loop": info.loop or 0}
    if info.kind == "gif":
        extra |= {"disposal": 2, "optimize": False}
    buffer = io.BytesIO()
    images[0].save(buffer, PILLOW_FORMATS[info.kind], save_all=True, append_images=images[1:],
                   duration=list(info.delays), **extra)
    path.write_bytes(buffer.getvalue())


def _gif_frame(rgba: np.ndarray) -> Image.Image:
    """A palette frame with one transparent index where alpha is below the cut."""
    image = Image.fromarray(rgba[..., :3], "RGB").quantize(255)
    indices = np.asarray(image).copy()
    transparent = rgba[..., 3] < GIF_ALPHA_CUT
    if transparent.any():
        indices[transparent] = 255
        palette = image.getpalette()[: 255 * 3] + [0, 0, 0]
        image = Image.fromarray(indices, "P")
        image.putpalette(palette)
        image.info["transparency"] = 255
    return image


def _write_video(path: Path, frames: list[np.ndarray], info: AnimationInfo, size: tuple[int, int],
                 options: EncodeOptions) -> None:
    width, height = size
    mean_delay = Fraction(sum(info.delays), len(info.delays))
    picture = PictureFormat(width, height, MS, 1 / (mean_delay * MS), SRGB_AS_VIDEO, None, 0)
    with av.open(str(path), "w", format=options.container_spec.muxer) as out:
        stream = add_video_stream(out, picture, options)
        pts = 0
        for frame, delay in zip(frames, info.delays, strict=True):
            alpha = frame[:height, :width, 3:].astype(np.float32) / 255
            flat = frame[:height, :width, :3] * alpha + BACKGROUND * (1 - alpha)
            encoded = rgb_to_frame(np.clip(flat + 0.5, 0, 255).astype(np.uint8), SRGB_AS_VIDEO, stream.pix_fmt)
            encoded.pts, encoded.time_base, encoded.duration = pts, MS, delay
            out.mux(stream.encode(encoded))
            pts += delay
        out.mux(stream.encode(None))
