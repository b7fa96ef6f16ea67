"""Videos and animated images on the web: their limits, how an upload of one becomes a job, and
what the job's view adds (frames, the result's facts).

An upload is told apart by its content (`upload_kind`): a video or an animated GIF/WebP/APNG
becomes a job of that kind (`web.jobs.video` runs it); a still image goes on to the image path.
Each limit is checked before any work, each refusal a JSON 4xx with the reason: the body
(MAX_VIDEO_BYTES; a still image keeps MAX_CONTENT_LENGTH), the duration, frames and pixels
(VideoLimits), and a result that would not fit the free disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Literal

import av
from flask import current_app, request
from PIL import Image, UnidentifiedImageError
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from esrgan.errors import ImageTooLargeError, UnsupportedFormatError
from esrgan.models import registry
from esrgan.video.animated import probe_animation
from esrgan.video.errors import VideoOptionError
from esrgan.video.opening import file_head, looks_like_video, open_media
from esrgan.video.options import CODECS, CONTAINERS, EncodeOptions, VideoLimits
from esrgan.video.probe import ANIMATED_FORMATS, IMAGE_DEMUXERS, probe
from esrgan.video.result import output_size
from web.errors import BadRequest
from web.http.forms import quote, read_options
from web.jobs.record import Job
from web.jobs.storage import new_id
from web.service import services

UploadKind = Literal["image", "animation", "video"]

VIDEO_DEFAULTS = {
    "MAX_VIDEO_BYTES": 500 * 2**20,  # an upload of a video or an animation (an image keeps MAX_CONTENT_LENGTH)
    "MAX_VIDEO_SECONDS": 600,
    "MAX_VIDEO_FRAMES": 36_000,
    "MAX_VIDEO_INPUT_PIXELS": 3840 * 2160,  # per frame; the output per frame is MAX_OUTPUT_PIXELS
    "VIDEO_PREVIEW_FRAMES": 12,  # the first frames upscaled as a quick preview of a long video
    "VIDEO_SEGMENT_SECONDS": 10,  # a video is upscaled in segments of about this much estimated work
    "VIDEO_FREE_DISK_MARGIN": 64 * 2**20,  # bytes a video job must leave free beyond its estimate
    "VIDEO_STALE_SECONDS": 30,  # a segment's holder silent this long is dead; its segment is taken over
}
# A rough upper bound of what an encoded frame weighs per output pixel (H.264 CRF 18 writes ~0.02),
# and a lossless animated frame; segments and the joined file exist at once, so twice that.
VIDEO_BYTES_PER_PIXEL = 0.1
ANIMATION_BYTES_PER_PIXEL = 1.0
# The extension a stored input gets by its container (FFmpeg demuxer names), so it is served right.
INPUT_EXT = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "avi": "avi", "gif": "gif", "webp": "webp", "apng": "png"}
WEB_CODECS = ("vp8", "vp9", "av1")  # in Matroska: stored as .webm, which browsers play
VIDEO_MIME = {"mp4": "video/mp4", "webm": "video/webm", "mkv": "video/x-matroska", "avi": "video/x-msvideo",
              "gif": "image/gif", "video": "application/octet-stream"}
PROGRESS_UNITS = {"image": "steps", "compare": "models"}  # what a job's progress counts, by its kind
SENT_NAME_CHARS = 80  # an upload's name in a message is cut to this
# What the page's file picker offers beside images (the server decides by content either way).
ACCEPT = ("video/mp4", "video/webm", "video/x-matroska", "video/quicktime", "video/x-msvideo", "image/gif",
          ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".apng")


def video_limits(config: Mapping) -> VideoLimits:
    """The engine's limits from the app's config."""
    return VideoLimits(max_seconds=float(config["MAX_VIDEO_SECONDS"]), max_frames=int(config["MAX_VIDEO_FRAMES"]),
                       max_input_pixels=int(config["MAX_VIDEO_INPUT_PIXELS"]),
                       max_output_pixels=int(config["MAX_OUTPUT_PIXELS"]))


def page_values(config: Mapping) -> dict:
    """What the page needs to accept and check a video before sending it (`web.http.pages`)."""
    return {"accept": list(ACCEPT), "max_bytes": int(config["MAX_VIDEO_BYTES"]),
            "max_seconds": float(config["MAX_VIDEO_SECONDS"]), "max_frames": int(config["MAX_VIDEO_FRAMES"]),
            "max_input_pixels": int(config["MAX_VIDEO_INPUT_PIXELS"]), "codecs": list(CODECS),
            "containers": list(CONTAINERS)}


def body_limit(config: Mapping) -> int:
    """The largest request body the server takes: an image's or a video's, whichever is larger."""
    return max(int(config["MAX_CONTENT_LENGTH"]), int(config["MAX_VIDEO_BYTES"]))


def upload_kind(stream: IO[bytes], max_pixels: int) -> UploadKind:
    """Whether an upload is a still image, an animated image or a video, by content; a broken video
    container is a video (its probe says what is wrong); anything that is neither animation nor
    video is "image" (the image path says what is wrong with it). No picture over ``max_pixels``
    is decoded to find out. The stream is left at its start."""
    try:
        try:
            with Image.open(stream) as image:
                animated = image.format in ANIMATED_FORMATS and getattr(image, "n_frames", 1) > 1
                return "animation" if animated else "image"
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            pass
        stream.seek(0)
        try:
            with open_media(stream, max_pixels) as container:
                return "image" if any(m in container.format.name for m in IMAGE_DEMUXERS) else "video"
        except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
            stream.seek(0)
            return "video" if looks_like_video(file_head(stream)) else "image"
    finally:
        stream.seek(0)


def _uploaded_file() -> FileStorage | None:
    upload = request.files.get("file")
    return upload if upload is not None and upload.filename else None


def refuse_video_or_animation() -> None:
    """The synchronous /upscale takes images only: a video or an animation is a job (POST /api/jobs)."""
    upload = _uploaded_file()
    if upload is not None and (kind := upload_kind(upload.stream, _probe_pixels(current_app.config))) != "image":
        raise UnsupportedFormatError(f"this is {'a video' if kind == 'video' else 'an animated image'}: "
                                     "/upscale answers images only; POST it to /api/jobs and poll the job")


def allow_video_bodies() -> None:
    """Let this request's body be as large as a video may be (call before the form is read)."""
    request.max_content_length = body_limit(current_app.config)


def video_job_from_request() -> Job | None:
    """The job of an uploaded video or animation, stored and checked; None when the upload is no
    video or animation (the image path takes it, and refuses what it must). Call
    `allow_video_bodies` first."""
    upload = _uploaded_file()
    if upload is None:
        return None
    config = current_app.config
    kind = upload_kind(upload.stream, _probe_pixels(config))
    size = _stream_size(upload.stream)
    if kind == "image":
        if size > int(config["MAX_CONTENT_LENGTH"]):
            raise ImageTooLargeError(f"the image is larger than {int(config['MAX_CONTENT_LENGTH']) / 2**20:g} MB "
                                     f"(videos may be {int(config['MAX_VIDEO_BYTES']) / 2**20:g} MB)")
        return None
    if size > int(config["MAX_VIDEO_BYTES"]):
        raise ImageTooLargeError(f"the {kind} is larger than {int(config['MAX_VIDEO_BYTES']) / 2**20:g} MB")
    options = read_options(request.form)
    if options.faces:
        raise BadRequest(f"Restore faces is for still images; send the {kind} without it")
    encode = read_encode_options(request.form, kind)
    service = services()
    job_id = new_id()
    tmp = _save(upload.stream, service.files.root)
    try:
        limits = video_limits(config)
        sent = _sent_name(upload.filename, kind)
        info = probe(tmp, limits, sent) if kind == "video" else probe_animation(tmp, limits, sent)
        width, height = info.width, info.height
        options = options.for_image(width, height)  # a result asked by its width or height
        model = options.model or _video_model(options)
        as_video = kind == "video" or encode is not None
        exact, even = output_size(width, height, options.scale)
        out_width, out_height = even if as_video else exact
        if out_width * out_height > limits.max_output_pixels:
            raise ImageTooLargeError(f"a {options.scale:g}x result would be {out_width}x{out_height} a frame; "
                                     f"the limit is {limits.max_output_pixels / 1e6:.1f} MP: choose a smaller scale")
        check_free_disk(service.files.root, out_width * out_height * info.frames, as_video, size, config)
        ext = _input_ext(info, kind)
        input_file = service.files.path(job_id, "in", ext).name
        os.replace(tmp, service.files.root / input_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    media = {"frames": info.frames, "duration": round(info.duration, 3), "source_kind": getattr(info, "kind", None),
             "frame_rate": str(info.frame_rate) if getattr(info, "frame_rate", None) else None,
             "encode": asdict(encode) if encode is not None else None, "as_video": as_video}
    output_format = encode.container if encode is not None else _same_kind_ext(info, kind)
    return Job(
        id=job_id, scale=options.scale, anime=options.anime, noise=options.noise, model=model,
        output_format=output_format, quality=options.quality,
        original_name=secure_filename(upload.filename) or kind, input_file=input_file,
        input_width=width, input_height=height, output_width=out_width, output_height=out_height,
        kind=kind, media=media, tta=options.tta,
    )


def read_encode_options(fields: Mapping[str, str], kind: UploadKind) -> EncodeOptions | None:
    """The fields ``codec``, ``crf`` and ``container``: how a video is written (mp4, H.264 CRF 18 by
    default, HEVC Main10 for a source of more than 8 bits). For an animation, None (written as the
    same kind) unless a container is asked for."""
    if kind == "animation" and not fields.get("container"):
        return None
    try:
        crf = int(fields["crf"]) if fields.get("crf") else None
    except ValueError:
        raise BadRequest(f"crf must be a whole number, not {quote(fields['crf'])}") from None
    codec, container = fields.get("codec") or None, fields.get("container") or "mp4"
    if (codec is not None and codec not in CODECS) or container not in CONTAINERS:
        raise VideoOptionError(f"codec must be one of {', '.join(CODECS)} and container one of "
                               f"{', '.join(CONTAINERS)}, not {quote(codec)} / {quote(container)}")
    return EncodeOptions(codec=codec, container=container, crf=crf).validate()  # type: ignore[arg-type]


def check_free_disk(root: Path, output_pixels: int, as_video: bool, input_bytes: int, config: Mapping) -> None:
    """Refuse a job whose result would not fit the free disk (with the margin kept free)."""
    per_pixel = VIDEO_BYTES_PER_PIXEL if as_video else ANIMATION_BYTES_PER_PIXEL
    need = int(2 * output_pixels * per_pixel) + input_bytes + int(config["VIDEO_FREE_DISK_MARGIN"])
    free = shutil.disk_usage(root).free
    if need > free:
        raise ImageTooLargeError(f"the result would need about {need / 2**20:,.0f} MB of disk and the server has "
                                 f"{free / 2**20:,.0f} MB free: choose a smaller scale or a shorter clip")


def add_kind_view(view: dict, job: Job) -> None:
    """Add to a job's status view its kind and the unit of its progress ("frames" for a video or an
    animation, "steps" for an image, "models" for a compare) and, for a video or an animation, its
    facts and the result's MIME type."""
    view["kind"] = job.kind
    view["progress"]["unit"] = PROGRESS_UNITS.get(job.kind, "frames")
    if job.kind in ("video", "animation"):
        media = job.media or {}
        view["media"] = {k: media.get(k) for k in ("frames", "duration", "frame_rate", "as_video", "result")}
        view["mime"] = VIDEO_MIME.get(job.output_format, "application/octet-stream")


def _sent_name(filename: str | None, kind: UploadKind) -> str:
    """The upload's name as the person sent it, for messages: its last part, printable, not too long."""
    name = "".join(c for c in (filename or "").replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())
    return (name if len(name) <= SENT_NAME_CHARS else name[: SENT_NAME_CHARS - 3] + "...") or f"the {kind}"


def _probe_pixels(config: Mapping) -> int:
    """The largest picture telling an upload's kind may decode: a video frame's limit (a larger one
    is refused by the probe that follows, without decoding it either)."""
    return int(config["MAX_VIDEO_INPUT_PIXELS"])


def _video_model(options) -> str:
    """Video's own default model unless noise reduction is asked (then the route's choice)."""
    if options.noise in (None, "none"):
        return registry.VIDEO_DEFAULT_MODEL
    return services().upscaler.plan(options.scale, options.anime, noise=options.noise).model


def _stream_size(stream: IO[bytes]) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _save(stream: IO[bytes], folder: Path) -> Path:
    """The upload copied into ``folder`` under a temporary name (a ``.part`` the sweeper clears)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".upload.", suffix=".part")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(stream, out, 2**20)
    return Path(name)


def _input_ext(info, kind: UploadKind) -> str:
    if kind == "animation":
        return INPUT_EXT[info.kind]
    if info.container.startswith("matroska"):
        return "webm" if info.codec in WEB_CODECS else "mkv"
    return INPUT_EXT.get(info.container, "video")


def _same_kind_ext(info, kind: UploadKind) -> str:
    return INPUT_EXT[info.kind] if kind == "animation" else "mp4"
