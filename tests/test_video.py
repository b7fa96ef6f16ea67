"""The video engine on clips the tests write with PyAV (real FFmpeg): tiny (64x48, 12 fps, 2.5 s),
moving real-photo content, an AAC tone and a subtitle track; a VFR clip, a rotated clip, damaged and
refused inputs, segments joined, animated GIF/WebP/APNG.

Most tests drive the engine with a deterministic frame function (pixel repetition), so what they
check is the engine's own work; one runs the real `Upscaler` with a tiny network end to end.
"""

from __future__ import annotations

import hashlib
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from esrgan.archs import SRVGGNetCompact
from esrgan.errors import Cancelled, ModelNotFoundError
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.video.animated import probe_animation, upscale_animation
from esrgan.video.errors import (
    DamagedVideoError,
    IncompatibleStreamError,
    NotAVideoError,
    NoVideoStreamError,
    SegmentError,
    UnsupportedCodecError,
    VideoOptionError,
    VideoTooLargeError,
    VideoTooLongError,
)
from esrgan.video.frames import default_video_model, frame_upscaler
from esrgan.video.options import EncodeOptions, VideoLimits, VideoWork
from esrgan.video.probe import media_kind, probe
from esrgan.video.segments import (
    join_segments,
    plan_rows,
    plan_segments,
    preview_segment,
    segments_from_rows,
    upscale_segment,
)
from esrgan.video.transcode import upscale_video
from tests.conftest import psnr
from tests.media import (
    BT709,
    FPS,
    FRAMES,
    damage_frame,
    packets,
    photo,
    write_animation,
    write_clip,
)


def double(rgb: np.ndarray) -> np.ndarray:
    """A deterministic 2x frame function: each pixel repeated."""
    return np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)


def seconds(info) -> list[Fraction]:
    return [p * info.time_base for p in info.pts]


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def container_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return container.duration / av.time_base


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "clip.mp4")
    write_clip(folder / "vfr.mkv", vfr=True, subtitle="srt")
    write_clip(folder / "rotated.mp4", rotation=90, subtitle="")
    return folder


def test_clip_keeps_frames_timestamps_sound_subtitles_and_metadata(media, tmp_path):
    src = media / "clip.mp4"
    calls = []
    result = upscale_video(src, tmp_path / "out.mp4", VideoWork(double, 2, progress=lambda d, t: calls.append((d, t))))
    before, after = probe(src), probe(result.path)
    assert (after.width, after.height) == (128, 96) == (result.width, result.height)
    assert after.frames == before.frames == result.frames == FRAMES
    assert seconds(after) == seconds(before)
    assert after.frame_rate == FPS and after.codec == "h264"
    assert abs(container_seconds(result.path) - container_seconds(src)) <= 1 / FPS
    assert packets(result.path, "audio") == packets(src, "audio")  # copied bit for bit
    subtitles = packets(src, "subtitle")
    assert packets(result.path, "subtitle") == subtitles == [b"\x00\x05Hello", b"\x00\x05world"]
    assert after.colour == before.colour and after.colour.matrix == BT709
    assert after.sample_aspect_ratio == before.sample_aspect_ratio == Fraction(4, 3)
    assert calls == [(i, FRAMES) for i in range(1, FRAMES + 1)]
    assert not result.transcoded and not result.rounded_to_even and result.notes == ()
    # The pictures are the source's, upscaled: colour conversion both ways uses the clip's own matrix.
    for small, big in zip(decoded(src), decoded(result.path), strict=True):
        assert psnr(big[::2, ::2] / 255, small / 255) > 33
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_variable_frame_rate_keeps_every_timestamp(media, tmp_path):
    src = media / "vfr.mkv"
    result = upscale_video(src, tmp_path / "out.mkv", VideoWork(double, 2, EncodeOptions(container="mkv")))
    before, after = probe(src), probe(result.path)
    steps = {b - a for a, b in zip(after.pts, after.pts[1:], strict=False)}
    assert steps == {50, 100, 150} and seconds(after) == seconds(before)
    assert packets(result.path, "audio") == packets(src, "audio")
    assert packets(result.path, "subtitle") == packets(src, "subtitle")


def test_srt_into_mp4_is_converted_and_said(media, tmp_path):
    result = upscale_video(media / "vfr.mkv", tmp_path / "out.mp4", VideoWork(double, 2))
    assert "subtitle #2 (subrip) transcoded to mov_text: MP4 cannot hold subrip" in result.streams
    assert result.transcoded and packets(result.path, "subtitle") == [b"\x00\x05Hello", b"\x00\x05world"]
    assert seconds(probe(result.path)) == seconds(probe(media / "vfr.mkv"))


def test_rotation_is_kept(media, tmp_path):
    result = upscale_video(media / "rotated.mp4", tmp_path / "out.mp4", VideoWork(double, 2))
    after = probe(result.path)
    assert after.rotation == 90 and (after.width, after.height) == (128, 96)


def test_webm_transcodes_aac_to_opus_and_says_so(media, tmp_path):
    result = upscale_video(media / "clip.mp4", tmp_path / "out.webm",
                           VideoWork(double, 2, EncodeOptions(codec="vp9", container="webm")))
    kinds = {s.kind: s.codec for s in probe(result.path).streams}
    assert kinds == {"audio": "opus", "subtitle": "webvtt"} and probe(result.path).codec == "vp9"
    assert any("aac" in s and "libopus" in s and "WEBM cannot hold aac" in s for s in result.streams)
    assert any("pixel aspect 4/3 is not kept" in note for note in result.notes)
    assert abs(container_seconds(result.path) - container_seconds(media / "clip.mp4")) <= 1 / FPS


@pytest.mark.parametrize(("codec", "container", "decoder"), [("vp9", "mkv", "vp9"), ("av1", "mp4", "av1")])
def test_other_codecs_keep_frames_and_timestamps(media, tmp_path, codec, container, decoder):
    src = media / "vfr.mkv"
    options = EncodeOptions(codec=codec, container=container)
    result = upscale_video(src, tmp_path / f"out.{container}", VideoWork(double, 2, options))
    after = probe(result.path)
    assert (after.codec, after.frames, after.width, after.height) == (decoder, FRAMES, 128, 96)
    assert seconds(after) == seconds(probe(src)) and after.rotation == 0


def test_refusing_to_transcode_stops_before_work(media, tmp_path):
    with pytest.raises(IncompatibleStreamError, match="WEBM cannot hold aac.*choose mkv"):
        upscale_video(media / "clip.mp4", tmp_path / "out.webm",
                      VideoWork(_never, 2, EncodeOptions(codec="vp9", container="webm", incompatible="refuse")))
    with pytest.raises(VideoOptionError, match="WEBM holds only vp9 or av1"):
        upscale_video(media / "clip.mp4", tmp_path / "out.webm",
                      VideoWork(_never, 2, EncodeOptions(codec="h264", container="webm")))
    assert list(tmp_path.iterdir()) == []


def _never(rgb: np.ndarray) -> np.ndarray:
    raise AssertionError("no frame may be upscaled for a refused clip")


def test_real_upscaler_end_to_end_rounds_an_odd_size_and_says_so(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    network = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4).eval()
    torch.save({"params_ema": network.state_dict()}, weights / "tiny-compact-x4.pth")
    store = ModelStore(weights, ncnn_dir=tmp_path / "no-shipped-weights")
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32"))
    src = write_clip(tmp_path / "odd.mp4", width=46, height=34, subtitle="")
    with pytest.raises(ModelNotFoundError):  # a bad choice is refused before the first frame
        frame_upscaler(upscaler, 1.5)  # the default, realesr-animevideov3, is not in this store
    assert default_video_model() == "realesr-animevideov3" and default_video_model("low") is None
    fn = frame_upscaler(upscaler, 1.5, model="tiny-compact-x4")
    result = upscale_video(src, tmp_path / "out.mp4", VideoWork(fn, 1.5))
    after = probe(result.path)
    assert result.exact_size == (69, 51) and (after.width, after.height) == (68, 50) == (result.width, result.height)
    assert result.rounded_to_even and "69x51 was cut to 68x50" in result.notes[0]
    assert after.frames == FRAMES and seconds(after) == seconds(probe(src))
    assert packets(result.path, "audio") == packets(src, "audio")


def test_damaged_mid_stream_names_the_frame_and_leaves_nothing(media, tmp_path):
    src = damage_frame(media / "clip.mp4", tmp_path / "damaged.mp4", 15)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DamagedVideoError, match=r"damaged at frame \d+") as caught:
        upscale_video(src, out / "out.mp4", VideoWork(double, 2))
    assert 0 < caught.value.frame <= 16
    assert list(out.iterdir()) == []


def test_truncated_file_is_refused_before_work(media, tmp_path):
    data = (media / "vfr.mkv").read_bytes()
    src = tmp_path / "cut.mkv"
    src.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(DamagedVideoError, match=r"cut.mkv is a damaged video \(truncated\?\).*after frame") as caught:
        upscale_video(src, tmp_path / "out.mp4", VideoWork(_never, 2))
    assert 0 < caught.value.frame < FRAMES
    assert [p.name for p in tmp_path.iterdir()] == ["cut.mkv"]


def test_cancel_stops_and_leaves_nothing(media, tmp_path):
    done = []
    with pytest.raises(Cancelled):
        upscale_video(media / "clip.mp4", tmp_path / "out.mp4",
                      VideoWork(double, 2, progress=lambda d, t: done.append(d), cancelled=lambda: len(done) >= 5))
    assert len(done) == 5 and list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("video-")]  # both stages joined


@pytest.mark.parametrize(("limits", "error", "words"), [
    (VideoLimits(max_seconds=2), VideoTooLongError, "lasts 2.5 s; the limit is 2 s"),
    (VideoLimits(max_frames=29), VideoTooLargeError, "more than 29 frames"),
    (VideoLimits(max_input_pixels=64 * 47), VideoTooLargeError, "64x48"),
    (VideoLimits(max_output_pixels=127 * 96), VideoTooLargeError, "128x96 a frame"),
    (VideoLimits(decoders=frozenset({"vp9"})), UnsupportedCodecError, "h264 video codec.*use one of vp9"),
])
def test_limits_refuse_before_work(media, tmp_path, limits, error, words):
    with pytest.raises(error, match=words):
        upscale_video(media / "clip.mp4", tmp_path / "out.mp4", VideoWork(_never, 2, limits=limits))
    assert list(tmp_path.iterdir()) == []


def test_inputs_that_are_not_videos_are_refused_with_reasons(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    still = tmp_path / "still.png"
    Image.fromarray(photo()[:40, :40]).save(still)
    sound = tmp_path / "sound.m4a"
    with av.open(str(sound), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    flv = write_clip(tmp_path / "old.flv", codec="flv", subtitle="", audio=False)
    with pytest.raises(NotAVideoError, match="not a video"):
        upscale_video(text, tmp_path / "a.mp4", VideoWork(_never, 2))
    with pytest.raises(NotAVideoError, match="image"):
        upscale_video(still, tmp_path / "b.mp4", VideoWork(_never, 2))
    with pytest.raises(NoVideoStreamError, match="holds no picture"):
        upscale_video(sound, tmp_path / "c.mp4", VideoWork(_never, 2))
    with pytest.raises(UnsupportedCodecError, match="flv1 video codec"):
        upscale_video(flv, tmp_path / "d.mp4", VideoWork(_never, 2))
    assert media_kind(still) == "image" and media_kind(flv) == "video"
    with pytest.raises(NotAVideoError):
        media_kind(text)


def test_segments_joined_equal_an_unsegmented_run(media, tmp_path):
    src = media / "clip.mp4"
    info = probe(src)
    segments = plan_segments(info, seconds_per_frame=0.1, seconds=1.0)  # 3 s of work: three segments
    assert [s.frames for s in segments] == [10, 10, 10]
    assert not {s.start_pts for s in segments[1:]} & set(info.keyframes)  # cut between keyframes
    parts = [tmp_path / s.file_name for s in segments]
    for segment, part in zip(segments, parts, strict=True):
        assert upscale_segment(info, segment, part, VideoWork(double, 2)) == segment.frames
    joined = join_segments(info, parts, tmp_path / "joined.mp4", scale=2)
    first = hashlib.sha256(joined.path.read_bytes()).hexdigest()
    upscale_segment(info, segments[1], parts[1], VideoWork(double, 2))  # a resumed worker encodes it again ...
    resumed = join_segments(info, parts, tmp_path / "resumed.mp4", scale=2)
    assert hashlib.sha256(resumed.path.read_bytes()).hexdigest() == first  # ... and the file is the same
    whole = upscale_video(src, tmp_path / "whole.mp4", VideoWork(double, 2))
    a, b = probe(joined.path), probe(whole.path)
    assert a.frames == b.frames == FRAMES and seconds(a) == seconds(b) == seconds(info)
    assert packets(joined.path, "audio") == packets(whole.path, "audio") == packets(src, "audio")
    assert packets(joined.path, "subtitle") == packets(src, "subtitle")
    assert (a.width, a.height, a.colour, a.sample_aspect_ratio) == (b.width, b.height, b.colour, b.sample_aspect_ratio)
    # Another GOP structure encodes the pictures a little differently (measured: 39.5 dB at worst).
    for x, y in zip(decoded(joined.path), decoded(whole.path), strict=True):
        assert psnr(x / 255, y / 255) > 38
    with pytest.raises(SegmentError, match="the segments hold 20 frames; the clip has 30"):
        join_segments(info, parts[:2], tmp_path / "short.mp4")


def test_a_one_keyframe_clip_is_planned_by_its_work_at_any_frame(tmp_path):
    info = probe(write_clip(tmp_path / "one.mp4", subtitle="", audio=False, gop=250, frames=31))
    assert len(info.keyframes) == 1
    assert len(plan_segments(info, 0.3, seconds=10.0)) == 1  # 9.3 s of work: one segment
    segments = plan_segments(info, 0.4, seconds=10.0)  # 12.4 s: two
    assert [(s.index, s.count, s.frames) for s in segments] == [(0, 2, 15), (1, 2, 16)]
    assert segments[1].start_pts == info.pts[15] and segments[0].end_pts == segments[1].start_pts
    assert segments[1].end_pts is None and segments[1].start == pytest.approx(15 / FPS)
    assert segments_from_rows(info, plan_rows(segments)) == segments
    assert len(plan_segments(info, 100.0, seconds=1.0)) == info.frames  # never more than a frame each


def test_preview_is_the_first_frames_upscaled(media, tmp_path):
    info = probe(media / "clip.mp4")
    segment = preview_segment(info, frames=7)
    assert upscale_segment(info, segment, tmp_path / "preview.mp4", VideoWork(double, 2)) == 7
    preview = probe(tmp_path / "preview.mp4")
    assert preview.frames == 7 and seconds(preview) == seconds(info)[:7] and preview.width == 128


@pytest.mark.parametrize(("name", "fmt", "kind"), [("a.gif", "GIF", "gif"), ("a.webp", "WEBP", "webp"),
                                                   ("a.png", "PNG", "apng")])
def test_animation_keeps_delays_loop_and_transparency(tmp_path, name, fmt, kind):
    src = write_animation(tmp_path / name, fmt)
    assert media_kind(src) == "animation"
    result = upscale_animation(src, tmp_path / f"out-{name}", VideoWork(double, 2))
    after = probe_animation(result.path)
    assert (after.kind, after.width, after.height, after.frames) == (kind, 82, 66, 5)
    assert after.delays == (100, 200, 50, 300, 120) and after.loop == 3 and after.has_alpha
    with Image.open(result.path) as image:
        for index in range(5):
            image.seek(index)
            alpha = np.asarray(image.convert("RGBA"))[..., 3]
            assert alpha[:14, :18].max() == 0 and alpha[24:, 28:].min() == 255


def test_animation_to_video_stamps_each_delay(tmp_path):
    src = write_animation(tmp_path / "a.gif", "GIF", delays=(100, 200, 50, 300, 120))
    result = upscale_animation(src, tmp_path / "a.mp4", VideoWork(double, 2), output="video")
    info = probe(result.path)
    assert info.frames == 5
    assert seconds(info) == [0, Fraction(1, 10), Fraction(3, 10), Fraction(7, 20), Fraction(13, 20)]  # the delays
    assert (info.width, info.height) == (82, 66) and result.kind == "mp4"
