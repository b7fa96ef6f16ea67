"""Clips of more than 8 bits stay deep: decoded at 16 bits a sample, upscaled as floats, written at
10 bits (HEVC Main10 by default, AV1 10-bit and ProRes when asked; 8-bit H.264 only when asked,
and said) with their colour tags, mastering display and content light level; and the encoders
segments use give the same bytes again (the lossless join relies on it)."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import av
import numpy as np
import pytest

from esrgan.video.frames import frame_to_rgb, frame_upscaler
from esrgan.video.options import EncodeOptions, VideoWork
from esrgan.video.probe import probe
from esrgan.video.segments import join_segments, plan_segments, upscale_segment
from esrgan.video.transcode import upscale_video
from tests.media import BT2020, BT2020_NCL, MAX_CLL, PQ, write_hdr_clip

FRAMES = 8
P3_D65 = ((Fraction(17, 25), Fraction(8, 25)), (Fraction(53, 200), Fraction(69, 100)),
          (Fraction(3, 20), Fraction(3, 50)), (Fraction(3127, 10000), Fraction(329, 1000)))


def double(rgb: np.ndarray) -> np.ndarray:
    assert rgb.dtype == np.uint16  # the frame function sees every bit of the source
    return np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)


@pytest.fixture(scope="module")
def hdr(tmp_path_factory):
    return write_hdr_clip(tmp_path_factory.mktemp("deep") / "hdr.mp4", frames=FRAMES)


def levels(path) -> int:
    """Distinct values of the red channel over the clip, decoded at 16 bits."""
    info = probe(path)
    with av.open(str(path)) as container:
        return len(np.unique(np.concatenate([frame_to_rgb(f, info.colour, 16)[..., 0].ravel()
                                             for f in container.decode(video=0)])))


def hdr_numbers(hdr) -> list[float]:
    m = hdr.mastering
    return [float(v) for point in (m.red, m.green, m.blue, m.white) for v in point] + [
        float(m.min_luminance), float(m.max_luminance)]


def assert_kept(src, out, exact: bool = True) -> None:
    """10 bits, frames, colour tags, HDR metadata (exactly as HEVC keeps it, or to AV1's precision:
    chromaticity in 16 fractional bits, luminance in 8 or 14) and timestamps."""
    a, b = probe(src), probe(out)
    assert b.bits == 10 and b.frames == a.frames == FRAMES
    assert b.colour == a.colour and (b.colour.primaries, b.colour.transfer, b.colour.matrix) == (BT2020, PQ, BT2020_NCL)
    assert b.hdr.max_cll == MAX_CLL
    if exact:
        m = b.hdr.mastering
        assert b.hdr == a.hdr and (m.red, m.green, m.blue, m.white) == P3_D65
        assert (m.max_luminance, m.min_luminance) == (1000, Fraction(1, 200))
    assert np.allclose(hdr_numbers(b.hdr), hdr_numbers(a.hdr), rtol=0, atol=1e-4)
    assert [p * b.time_base for p in b.pts] == [p * a.time_base for p in a.pts]


def test_a_10_bit_hdr_clip_comes_out_10_bit_hevc_with_its_tags_and_light(hdr, tmp_path):
    info = probe(hdr)
    assert info.bits == 10 and info.pix_fmt == "yuv420p10le" and info.hdr.max_cll == MAX_CLL
    result = upscale_video(hdr, tmp_path / "out.mp4", VideoWork(double, 2))
    assert result.codec == "hevc" and result.notes == ()
    assert_kept(hdr, result.path)
    assert probe(result.path).pix_fmt == "yuv420p10le" and probe(result.path).codec == "hevc"
    assert levels(result.path) > 2 * 256 > 256  # finer than 8 bits could hold (8 bits: 256 levels at most)


def test_the_real_upscaler_keeps_the_depth(hdr, tmp_path, upscaler):
    fn = frame_upscaler(upscaler, 2, model="realesr-animevideov3")
    result = upscale_video(hdr, tmp_path / "real.mp4", VideoWork(fn, 2))
    assert_kept(hdr, result.path)
    assert levels(result.path) > 256


@pytest.mark.parametrize(("codec", "container", "pix_fmt", "light"), [
    ("av1", "mp4", "yuv420p10le", True),
    ("prores", "mkv", "yuv422p10le", False),  # ProRes in Matroska carries no HDR side data
])
def test_av1_and_prores_are_10_bit_when_asked(hdr, tmp_path, codec, container, pix_fmt, light):
    out = upscale_video(hdr, tmp_path / f"out.{container}",
                        VideoWork(double, 2, EncodeOptions(codec=codec, container=container)))
    after = probe(out.path)
    assert after.pix_fmt == pix_fmt and after.frames == FRAMES and after.colour == probe(hdr).colour
    if light:
        assert_kept(hdr, out.path, exact=False)
    assert levels(out.path) > 256


def test_h264_when_asked_is_8_bit_and_says_so(hdr, tmp_path):
    result = upscale_video(hdr, tmp_path / "out.mp4", VideoWork(double, 2, EncodeOptions(codec="h264")))
    assert probe(result.path).pix_fmt == "yuv420p" and levels(result.path) <= 256
    assert result.notes == ("the 10-bit source was written with 8 bits (yuv420p): h264 was asked; choose hevc, "
                            "av1 or prores to keep them",)


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_a_segment_encoded_again_gives_the_same_bytes_and_joins(hdr, tmp_path, codec):
    info = probe(hdr)
    options = EncodeOptions(codec=codec)
    segments = plan_segments(info, seconds_per_frame=1.0, seconds=3.0)  # 3, 3 and 2 frames
    parts = [tmp_path / s.file_name for s in segments]
    for segment, part in zip(segments, parts, strict=True):
        upscale_segment(info, segment, part, VideoWork(double, 2, options))
    first = [hashlib.sha256(p.read_bytes()).hexdigest() for p in parts]
    for segment, part in zip(segments, parts, strict=True):
        upscale_segment(info, segment, part, VideoWork(double, 2, options))
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in parts] == first
    joined = join_segments(info, parts, tmp_path / "joined.mp4", options, scale=2)
    assert_kept(hdr, joined.path, exact=codec == "hevc")
