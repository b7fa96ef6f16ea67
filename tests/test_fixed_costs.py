"""Fixed costs of a one-image CLI run: what it imports, how it leaves, how it loads its weights."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, crop_of


def run_python(code: str, weights_dir) -> subprocess.CompletedProcess:
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_importing_the_cli_imports_no_spandrel(weights_dir):
    done = run_python("import sys, esrgan.cli; print(sorted(m for m in sys.modules if m.startswith('spandrel')))",
                      weights_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_x4plus_cli_run_imports_no_spandrel_and_a_real_cugan_one_does(tmp_path, weights_dir):
    source = tmp_path / "in.png"
    crop_of("coffee.png", (80, 80, 97, 94)).save(source)  # 17x14: odd sides
    code = ("import sys; from esrgan.cli import main; code = main(sys.argv[1:]); "
            "print(code, any(m.startswith('spandrel') for m in sys.modules))")
    for extra, imported in (((), False), (("--anime", "-s", "2"), True)):
        target = tmp_path / f"out{len(extra)}.png"
        env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, "-c", code, "upscale", str(source), "-o", str(target),
                               "--device", "cpu", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == f"0 {imported}"
        assert target.is_file()
