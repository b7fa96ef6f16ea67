"""What the video engine may take and how it writes: output codecs and containers, encoder settings,
the limits checked before any work, and `VideoWork`, which bundles them with the frame function.
Pure data; no environment is read here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from esrgan.video.errors import VideoOptionError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from esrgan.tiling.steps import CancelFn, ProgressFn

Codec = Literal["h264", "hevc", "vp9", "av1", "prores"]
Container = Literal["mp4", "mkv", "webm"]
OnIncompatible = Literal["transcode", "refuse"]


@dataclass(frozen=True)
class CodecSpec:
    """One output video codec: its FFmpeg encoder and how its settings are spelt.

    Attributes:
        pix_fmt: What it writes from an 8-bit source.
        deep_pix_fmt: What it writes from a source of more bits (10 here), or None: 8 bits always.
        params_option: The encoder's option of its own ``key=value:...`` settings (HDR metadata,
            threads), or None.
    """

    encoder: str
    pix_fmt: str
    deep_pix_fmt: str | None
    default_crf: int
    max_crf: int
    default_preset: str
    preset_option: str  # the encoder's name for its speed/quality knob
    params_option: str | None = None

    def encoder_options(self, crf: int, preset: str) -> dict[str, str]:
        options = {self.preset_option: preset}
        if self.max_crf:
            options["crf"] = str(crf)
        if self.encoder == "libvpx-vp9":
            options |= {"b": "0", "row-mt": "1"}  # constant quality needs bitrate 0
        return options


CODECS: dict[str, CodecSpec] = {
    # 4:2:0 (what every player decodes) at 8 bits, or 10 from a deeper source; CRF 18 is visually
    # lossless for x264. H.264 stays 8-bit (10-bit H.264 plays almost nowhere); ProRes is 4:2:2.
    "h264": CodecSpec("libx264", "yuv420p", None, 18, 51, "medium", "preset"),
    "hevc": CodecSpec("libx265", "yuv420p", "yuv420p10le", 20, 51, "medium", "preset", "x265-params"),
    "vp9": CodecSpec("libvpx-vp9", "yuv420p", None, 30, 63, "4", "cpu-used"),
    "av1": CodecSpec("libsvtav1", "yuv420p", "yuv420p10le", 30, 63, "8", "preset", "svtav1-params"),
    "prores": CodecSpec("prores_ks", "yuv422p10le", "yuv422p10le", 0, 0, "hq", "profile"),
}
DEEP_DEFAULT_CODEC = "hevc"  # for a source of more than 8 bits when no codec is asked: Main10
# The wheel's x265 corrupts memory on some narrower pictures (40 or 48 pixels wide, measured): HEVC
# is written only from this size up, and the default for a smaller deep result is AV1.
MIN_HEVC_SIDE = 64


@dataclass(frozen=True)
class ContainerSpec:
    """One output container: FFmpeg's muxer name, the file suffix, and what it needs for streams it
    cannot hold (the target codecs of a transcode)."""

    muxer: str
    suffix: str
    video_codecs: tuple[str, ...]
    audio_fallback: str  # encoder
    subtitle_fallback: str | None  # encoder for text subtitles


CONTAINERS: dict[str, ContainerSpec] = {
    "mp4": ContainerSpec("mp4", ".mp4", ("h264", "hevc", "vp9", "av1"), "aac", "mov_text"),
    "mkv": ContainerSpec("matroska", ".mkv", ("h264", "hevc", "vp9", "av1", "prores"), "libopus", "srt"),
    "webm": ContainerSpec("webm", ".webm", ("vp9", "av1"), "libopus", "webvtt"),
}
SUFFIX_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "mkv", ".webm": "webm"}

# Decoders a clip may use: what cameras, phones, editors and the web deliver. Anything else is refused
# before work (the list is a parameter of `VideoLimits`).
SUPPORTED_DECODERS = frozenset({
    "h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2video", "mpeg1video", "mjpeg", "prores",
    "dnxhd", "theora", "ffv1", "h263", "msmpeg4v3", "wmv3", "vc1", "huffyuv", "utvideo", "png",
    "qtrle", "rawvideo",
})

DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MAX_FRAMES = 36_000
DEFAULT_MAX_INPUT_PIXELS = 3840 * 2160
DEFAULT_MAX_OUTPUT_PIXELS = 7680 * 4320
# A fixed thread count makes an encode reproducible on any machine: x264 is deterministic for a
# given count, so segments encoded on different workers join into the bytes one worker would write.
DEFAULT_ENCODER_THREADS = 4


@dataclass(frozen=True)
class VideoLimits:
    """What a clip may be; each is checked before any work.

    Attributes:
        max_seconds: Longest duration.
        max_frames: Most frames.
        max_input_pixels: Most pixels per input frame.
        max_output_pixels: Most pixels per output frame.
        decoders: Video codecs accepted (FFmpeg decoder names).
    """

    max_seconds: float = DEFAULT_MAX_SECONDS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS
    decoders: frozenset[str] = field(default=SUPPORTED_DECODERS)


@dataclass(frozen=True)
class EncodeOptions:
    """How the result is written.

    Attributes:
        codec: ``"h264"`` (libx264), ``"hevc"`` (libx265), ``"vp9"``, ``"av1"`` (SVT-AV1) or
            ``"prores"`` (ProRes 422 HQ, MKV only); None: by the source (`for_depth`): H.264 for
            8 bits, HEVC Main10 for more.
        container: ``"mp4"`` (default), ``"mkv"`` or ``"webm"`` (VP9 or AV1 only).
        crf: Constant-quality level; None: the codec's default (H.264 18, HEVC 20, VP9 and AV1 30).
        preset: The encoder's speed knob; None: its default (x264 ``medium``).
        threads: Encoder threads; a fixed number gives the same bytes on any machine.
        incompatible: What to do with a sound or subtitle stream the container cannot hold:
            ``"transcode"`` that stream only (and say so) or ``"refuse"`` before work.
    """

    codec: Codec | None = None
    container: Container = "mp4"
    crf: int | None = None
    preset: str | None = None
    threads: int = DEFAULT_ENCODER_THREADS
    incompatible: OnIncompatible = "transcode"

    def for_depth(self, bits: int, side: int = MIN_HEVC_SIDE) -> EncodeOptions:
        """These options with the codec chosen for a source of ``bits`` per sample, written with
        pictures of ``side`` pixels on their shorter side, when none is asked.

        Raises:
            VideoOptionError: HEVC asked for pictures smaller than MIN_HEVC_SIDE.
        """
        if self.codec == "hevc" and side < MIN_HEVC_SIDE:
            raise VideoOptionError(f"hevc is written here from {MIN_HEVC_SIDE}x{MIN_HEVC_SIDE} pictures up; this "
                                   f"result is {side} pixels on a side: choose av1 or a larger scale")
        if self.codec is not None:
            return self
        if self.container == "webm" or (bits > 8 and side < MIN_HEVC_SIDE):
            return replace(self, codec="av1" if bits > 8 else "vp9")
        return replace(self, codec=DEEP_DEFAULT_CODEC if bits > 8 else "h264")

    def pix_fmt(self, bits: int) -> str:
        """What the encoder writes from a source of ``bits`` per sample."""
        spec = self.codec_spec
        return spec.deep_pix_fmt if bits > 8 and spec.deep_pix_fmt else spec.pix_fmt

    @property
    def codec_spec(self) -> CodecSpec:
        return CODECS[self.codec or "h264"]

    @property
    def container_spec(self) -> ContainerSpec:
        return CONTAINERS[self.container]

    @property
    def effective_crf(self) -> int:
        return self.codec_spec.default_crf if self.crf is None else self.crf

    @property
    def effective_preset(self) -> str:
        return self.codec_spec.default_preset if self.preset is None else self.preset

    def validate(self) -> EncodeOptions:
        """Return self when every option is known and they fit together. Raises VideoOptionError."""
        if self.codec is not None and self.codec not in CODECS:
            raise VideoOptionError(f"codec must be one of {', '.join(CODECS)}, not {self.codec!r}")
        if self.container not in CONTAINERS:
            raise VideoOptionError(f"container must be one of {', '.join(CONTAINERS)}, not {self.container!r}")
        if self.codec is not None and self.codec not in self.container_spec.video_codecs:
            holds = " or ".join(self.container_spec.video_codecs)
            raise VideoOptionError(f"{self.container.upper()} holds only {holds} video; choose mp4 or mkv "
                                   f"for {self.codec}")
        if self.crf is not None and not self.codec_spec.max_crf:
            raise VideoOptionError(f"{self.codec} takes no crf: its quality is its profile")
        if not 0 <= self.effective_crf <= self.codec_spec.max_crf:
            raise VideoOptionError(f"crf for {self.codec} must be 0 to {self.codec_spec.max_crf}, not {self.crf}")
        if self.incompatible not in ("transcode", "refuse"):
            raise VideoOptionError(f"incompatible must be 'transcode' or 'refuse', not {self.incompatible!r}")
        if self.threads < 0:
            raise VideoOptionError(f"threads must be 0 (auto) or more, not {self.threads}")
        return self


def container_for_path(path: str) -> Container:
    """The container a file name asks for by its suffix (mp4 when it names none we write)."""
    suffix = "." + str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    return SUFFIX_CONTAINERS.get(suffix, "mp4")  # type: ignore[return-value]


@dataclass(frozen=True)
class VideoWork:
    """What every frame goes through and how the result is written: what `upscale_video`,
    `upscale_segment` and `upscale_animation` (`esrgan.video`) take besides where to read and write.

    Attributes:
        upscale_frame: (H, W, 3) RGB -> the exact ``scale``x size, (H', W', 3) RGB, uint8 for an
            8-bit clip, uint16 for a deeper one (see `esrgan.video.frames.frame_upscaler`).
        scale: The scale ``upscale_frame`` applies (any from 1 to 8).
        options: Codec, container, CRF, what to do with streams the container cannot hold.
        limits: Checked before any work.
        progress: Called with (frames done, frames in all) after each frame.
        cancelled: Polled before each frame; True stops with `Cancelled`.
    """

    upscale_frame: Callable[[np.ndarray], np.ndarray]  # a `esrgan.video.frames.FrameFn`
    scale: float
    options: EncodeOptions = EncodeOptions()
    limits: VideoLimits = VideoLimits()
    progress: ProgressFn | None = None
    cancelled: CancelFn | None = None
