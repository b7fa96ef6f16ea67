"""Video: upscale clips and animated images frame by frame, faithful to the source.

The engine takes a frame function, ``(H, W, 3) uint8 RGB -> (H', W', 3) uint8 RGB``, so it does not
depend on how frames are upscaled; `frame_upscaler` builds one from an `esrgan.pipeline.Upscaler`.

    from esrgan.video import frame_upscaler, probe, upscale_video
    from esrgan.video.options import VideoWork
    fn = frame_upscaler(upscaler, scale=2)                  # realesr-animevideov3 unless told
    result = upscale_video("clip.mp4", "clip_x2.mp4", VideoWork(fn, 2, progress=bar, cancelled=stop))

Entry points:
    media_kind(path): "image", "animation" or "video", by content.
    probe(path, limits) -> VideoInfo: facts and limits, checked before any work.
    upscale_video(src, dst, work) -> VideoResult; ``work``: `esrgan.video.options.VideoWork` (the frame
        function, its scale, the encoder's options, the limits, progress and cancel), as for the others.
    plan_segments / upscale_segment / join_segments: the same work in segments cut at any frame by
        estimated work (resume, several workers), joined losslessly; preview_segment: the first
        frames, for a preview.
    probe_animation / upscale_animation: GIF, WebP, APNG in, the same kind (or a video) out.

Every refusal is a `VideoError` (see `esrgan.video.errors`), each also a kind of the engine's own
errors. Outputs are written atomically: nothing at the output path unless the whole file is.
"""

from esrgan.video.animated import AnimationInfo, AnimationResult, probe_animation, upscale_animation
from esrgan.video.errors import (
    DamagedVideoError,
    IncompatibleStreamError,
    NotAVideoError,
    NoVideoStreamError,
    SegmentError,
    UnsupportedCodecError,
    VideoError,
    VideoOptionError,
    VideoTooLargeError,
    VideoTooLongError,
)
from esrgan.video.frames import DEFAULT_VIDEO_MODEL, FrameFn, default_video_model, frame_upscaler
from esrgan.video.options import CODECS, CONTAINERS, EncodeOptions, VideoLimits, container_for_path
from esrgan.video.probe import Colour, StreamInfo, VideoInfo, media_kind, probe
from esrgan.video.result import VideoResult, output_size
from esrgan.video.segments import (
    Segment,
    join_segments,
    plan_rows,
    plan_segments,
    preview_segment,
    segments_from_rows,
    upscale_segment,
)
from esrgan.video.transcode import upscale_video

__all__ = [
    "CODECS", "CONTAINERS", "DEFAULT_VIDEO_MODEL", "AnimationInfo", "AnimationResult", "Colour",
    "DamagedVideoError", "EncodeOptions", "FrameFn", "IncompatibleStreamError", "NoVideoStreamError",
    "NotAVideoError", "Segment", "SegmentError", "StreamInfo", "UnsupportedCodecError", "VideoError",
    "VideoInfo", "VideoLimits", "VideoOptionError", "VideoResult", "VideoTooLargeError", "VideoTooLongError",
    "container_for_path", "default_video_model", "frame_upscaler", "join_segments", "media_kind",
    "output_size", "plan_rows", "plan_segments", "preview_segment", "probe", "probe_animation", "upscale_animation",
    "segments_from_rows", "upscale_segment", "upscale_video",
]
