"""Fixed costs of a one-image CLI run: what it imports, how it leaves, how it loads its weights."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import torch

from esrgan import catalogue, registry
from esrgan.weights import ModelStore
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


# A one-shot command as ``python -m esrgan`` runs it, in a process that registers an exit handler
# and keeps an object whose finaliser only the interpreter's teardown runs.
# With "thread", a thread that writes once the main thread has ended (as a late writer would).
QUICK_EXIT_PROBE = """
import atexit, os, runpy, sys, threading
class Teardown:
    def __del__(self):
        os.write(1, b"teardown ran\\n")
probe = Teardown()
atexit.register(lambda: print("exit handler ran", flush=True))
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (threading.main_thread().join(), print("thread wrote", flush=True))).start()
sys.argv = ["esrgan", *sys.argv[2:]]
runpy.run_module("esrgan", run_name="__main__")
"""


def test_a_one_shot_command_skips_the_teardown_after_exit_handlers_and_flushed_output(weights_dir):
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", QUICK_EXIT_PROBE, "-", "models"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Models:" and "any scale from" in done.stdout  # all of it, flushed into a pipe
    assert lines[-1] == "exit handler ran" and "teardown ran" not in lines


def test_a_thread_still_running_or_a_failing_command_gets_the_normal_exit(tmp_path, weights_dir):
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", QUICK_EXIT_PROBE, "thread", "models"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {"thread wrote", "exit handler ran", "teardown ran"} <= set(done.stdout.splitlines())
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    done = subprocess.run([sys.executable, "-c", QUICK_EXIT_PROBE, "-", "upscale", str(bad), "-o",
                           str(tmp_path / "out.png")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1  # one failed input: the status still comes through the quick exit
    assert done.stderr.splitlines()[-1].startswith("error:") and "teardown ran" not in done.stdout


def test_converted_weights_are_hashed_once_then_known_by_their_stamp(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(catalogue, "RACY_NS", 0)  # stamps stand for content at once (else after 2 s)
    spec = registry.spec("realesr-animevideov3")
    first = ModelStore(tmp_path).state_dict(spec.name)
    cached = ModelStore(tmp_path).converted_path(spec)
    sidecar = cached.with_suffix(".sha256")
    record = json.loads(sidecar.read_text())
    assert record["stamps"]["file"][0] == cached.stat().st_size and record["stamps"]["source"] is not None
    # A recorded hash is taken on the stamp's word: a wrong one goes unnoticed while the stamp holds ...
    sidecar.write_text(json.dumps({**record, "sha256": "0" * 64}))
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(ModelStore(tmp_path).state_dict(spec.name), first)
    assert "rebuilding" not in caplog.text
    # ... and is checked as soon as the file's stamp changes (here only its modification time).
    os.utime(cached, ns=(cached.stat().st_atime_ns, cached.stat().st_mtime_ns - 10**9))
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(ModelStore(tmp_path).state_dict(spec.name), first)
    assert "checksum mismatch" in caplog.text
    caplog.clear()
    # A source whose stamp changed is hashed again; the same content keeps the cache and its new stamp is kept.
    rebuilt = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**rebuilt, "stamps": {**rebuilt["stamps"], "source": [0, 0, 0, 0]}}))
    with caplog.at_level(logging.WARNING):
        ModelStore(tmp_path).state_dict(spec.name)
    assert "rebuilding" not in caplog.text
    assert json.loads(sidecar.read_text()) == rebuilt
