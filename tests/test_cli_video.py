"""The command line's video mode on clips and animations the test writes: decided by content, the
result's frames, size, sound and delays, and one-line refusals that leave nothing at the output."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from esrgan.archs import SRVGGNetCompact
from esrgan.cli.main import main
from esrgan.pipeline import UPSCALED_LOG
from esrgan.video.animated import probe_animation
from esrgan.video.probe import probe
from tests.media import packets, write_animation, write_clip

TINY = "tiny-compact-x4"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-weights")
    torch.manual_seed(0)
    network = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4).eval()
    torch.save({"params_ema": network.state_dict()}, folder / f"{TINY}.pth")
    return folder


@pytest.fixture
def cli(tiny_weights, monkeypatch, capsys):
    monkeypatch.setenv("REMASTER_WEIGHTS_FOLDER", str(tiny_weights))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["upscale", *map(str, args), "--device", "cpu", "--precision", "fp32"])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_clip_by_content_keeps_frames_and_sound(cli, tmp_path):
    src = write_clip(tmp_path / "clip.mp4", width=46, height=34, subtitle="", frames=8)
    src = src.rename(tmp_path / "clip.bin")  # the content decides, not the name
    code, out, _ = cli(src, "-s", "2", "--model", TINY, "--crf", "20", "-o", tmp_path / "clip_x2.mkv")
    assert code == 0, out
    after = probe(tmp_path / "clip_x2.mkv")
    assert (after.width, after.height, after.frames) == (92, 68, 8) and after.codec == "h264"
    assert "container" not in out and "8 frames, h264 in mkv, crf 20" in out
    assert packets(tmp_path / "clip_x2.mkv", "audio") == packets(src, "audio")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.bin", "clip_x2.mkv"]


def test_a_gif_stays_a_gif_with_its_delays_or_becomes_an_mp4(cli, tmp_path):
    src = write_animation(tmp_path / "a.gif", "GIF", delays=(100, 200, 50))
    assert cli(src, "-s", "2", "--model", TINY, "-o", tmp_path / "a_x2.gif")[0] == 0
    gif = probe_animation(tmp_path / "a_x2.gif")
    assert (gif.kind, gif.width, gif.height, gif.delays, gif.loop) == ("gif", 82, 66, (100, 200, 50), 3)
    assert cli(src, "-s", "2", "--model", TINY, "-o", tmp_path / "a_x2.mp4")[0] == 0
    video = probe(tmp_path / "a_x2.mp4")
    assert (video.width, video.height, video.frames) == (82, 66, 3)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=16000, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


@pytest.mark.parametrize(("make", "flags", "words"), [
    (_audio_only, (), "holds no picture"),
    (lambda p: write_clip(p, subtitle="", frames=4), ("--codec", "h264", "--container", "webm"), "WEBM holds only"),
    (lambda p: write_animation(p.with_suffix(".gif"), "GIF"), (), "write it as .gif"),
])
def test_refused_input_says_why_in_one_line_and_writes_nothing(cli, tmp_path, make, flags, words):
    src = make(tmp_path / "input.mp4")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / ("result.webp" if src.suffix == ".gif" else "result.mp4")
    code, _, err = cli(src, "-s", "2", "--model", TINY, *flags, "-o", target)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err
    assert list(out_dir.iterdir()) == []


def test_a_clip_logs_one_line_for_its_frames_not_one_per_frame(tiny_weights, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("REMASTER_WEIGHTS_FOLDER", str(tiny_weights))
    src = write_clip(tmp_path / "clip.mp4", width=22, height=18, subtitle="", frames=5)
    still = tmp_path / "still.png"
    av.open(str(src)).decode(video=0).__next__().to_image().save(still)
    flags = ["-s", "2", "--model", TINY, "--device", "cpu", "--precision", "fp32"]
    with caplog.at_level(logging.INFO):
        assert main(["-v", "upscale", str(src), *flags, "-o", str(tmp_path / "clip_x2.mp4")]) == 0
        frames = [r for r in caplog.records if r.msg == UPSCALED_LOG]
        video = [r for r in caplog.records if r.name == "esrgan.video.transcode"]
        caplog.clear()
        assert main(["-v", "upscale", str(still), *flags, "-o", str(tmp_path / "still_x2.png")]) == 0
        image = [r for r in caplog.records if r.msg == UPSCALED_LOG]
    assert frames == [] and len(video) == 1 and "5 frames" in video[0].getMessage()
    assert len(image) == 1  # an image still says its line: only a clip's frames are left out
