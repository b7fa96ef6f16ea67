"""Every command the docs show runs: each ``sh`` and ``python`` block of README.md and docs/*.md.

The blocks are read by pytest-codeblocks (`extract_from_file`) and run from a temporary copy of the
repository, never the repository itself, beside small inputs made here: ``in.png`` (24x16),
``in.jpg``, ``clip.mp4``, ``loop.gif`` and ``my_photos/``. The copy's ``.venv`` is a fresh virtual
environment that sees the packages this suite runs with, so the README's install command finds every
pin satisfied and runs offline. Its ``weights/`` is the session's weights folder (converted once).

The README's first command installs and starts the app, which does not exit: it is run until
``/healthz`` answers (its block is marked ``docs_server``), and the blocks that talk to
``127.0.0.1:5000`` run against that server, on a free port. A block that cannot run here says why
with ``<!--pytest.mark.skip(reason="...")-->`` on the line above it. A new guide in docs/ is
collected without any change here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from pytest_codeblocks import extract_from_file

from tests.conftest import ROOT, crop_of
from tests.media import write_animation, write_clip

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = ("sh", "bash", "python")
SERVER_MARK = "pytest.mark.docs_server"
ADDRESS = "127.0.0.1:5000"  # where the docs say the app listens
# What the copy leaves out: version control, the environment, what the product or the tests write.
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "weights", "uploads", "__pycache__", ".pytest_cache",
                                    "test-artifacts", "results", "*.pyc")
BLOCK_SECONDS = 600  # one block at most (a real install check, a tiny training run)
START_SECONDS = 600  # the first command: venv, pip finding every pin satisfied, the app's first start
PAGE_SECONDS = 120  # the first page, while the app loads its models in the background
PHOTOS = ("astronaut.png", "coffee.png", "chelsea_head.png", "camera.png", "rocket.png")


def doc_blocks():
    for path in DOCS:
        for block in extract_from_file(path):
            if block.syntax not in RUNNABLE:
                continue
            # The marks are pytest marks written as text, evaluated as pytest-codeblocks' own plugin does.
            marks = [eval(mark, {"pytest": pytest, "sys": sys}) for mark in block.marks]
            yield pytest.param(block, marks=marks, id=f"{path.relative_to(ROOT)}:{block.lineno}")


def make_venv(folder: Path) -> None:
    """A fresh virtual environment that sees the packages of the one running this suite."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True, timeout=300)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (folder / "lib" / version / "site-packages" / "suite-packages.pth").write_text(sysconfig.get_paths()["purelib"])


def make_inputs(folder: Path) -> None:
    crop_of("astronaut.png", (100, 40, 124, 56)).save(folder / "in.png")
    crop_of("coffee.png", (60, 40, 84, 56)).save(folder / "in.jpg", quality=90)
    write_clip(folder / "clip.mp4", width=32, height=24, subtitle=None, frames=6)
    write_animation(folder / "loop.gif", "GIF", delays=(100, 200, 120))
    photos = folder / "my_photos"
    photos.mkdir()
    for i, name in enumerate(PHOTOS * 2):
        crop_of(name, (8 * i, 8 * i, 8 * i + 72, 8 * i + 72)).save(photos / f"{i:02d}_{name}")


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory, weights_dir) -> Path:
    """The repository as a user has it after cloning, in a temporary folder, with the docs' inputs."""
    copy = tmp_path_factory.mktemp("docs") / "remaster"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED, symlinks=True)
    (copy / "weights").symlink_to(weights_dir, target_is_directory=True)
    (copy / "uploads").mkdir()
    make_venv(copy / ".venv")
    make_inputs(copy)
    return copy


@pytest.fixture(scope="module")
def block_env(repo_copy, tmp_path_factory) -> dict[str, str]:
    """The environment of a block: ``python3`` is the interpreter this suite's environment was made
    from (as .ci/run's PYTHON), so the README's ``python3 -m venv .venv`` keeps the copy's venv as it is."""
    shims = tmp_path_factory.mktemp("shims")
    (shims / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {name: value for name, value in os.environ.items() if not name.startswith("REMASTER_")}
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    return env


def server_block():
    blocks = [block for block in extract_from_file(DOCS[0]) if SERVER_MARK in block.marks]
    assert len(blocks) == 1, f"README.md must mark its install-and-start command {SERVER_MARK} once"
    return blocks[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def docs_server(repo_copy, block_env, tmp_path_factory):
    """The README's first command, run as written: it installs (every pin already satisfied) and
    starts the app, which serves until stopped. Yields the address it listens on."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", server_block().code], cwd=repo_copy,
                                   env={**block_env, "PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the README's first command ended ({process.returncode}):\n{log_path.read_text()[-4000:]}")
            try:
                if get(f"http://{address}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /healthz after {START_SECONDS} s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        # On a CPU the first start measures the processor once, in the background (README, "The first
        # start"); the CLI blocks then read that record instead of measuring again.
        record = repo_copy / "weights" / "converted" / "calibration.json"
        while not torch.cuda.is_available() and not record.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the first start recorded no CPU measurement:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield address
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-4000:]


@pytest.mark.parametrize("block", list(doc_blocks()))
def test_doc_block(block, repo_copy, block_env, request):
    if SERVER_MARK in block.marks:
        status, page = get(f"http://{request.getfixturevalue('docs_server')}/", timeout=PAGE_SECONDS)
        assert status == 200 and "Upscale" in page
        return
    code = block.code
    if ADDRESS in code:
        code = code.replace(ADDRESS, request.getfixturevalue("docs_server"))
    if block.syntax == "python":
        command = [str(repo_copy / ".venv" / "bin" / "python"), "-c", code]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    done = subprocess.run(command, cwd=repo_copy, env=block_env, capture_output=True, text=True,
                          timeout=BLOCK_SECONDS)
    assert done.returncode == 0, (f"exit {done.returncode}\n--- block\n{block.code}--- stdout\n{done.stdout[-3000:]}"
                                  f"\n--- stderr\n{done.stderr[-3000:]}")


def test_every_guide_is_linked_from_the_readme():
    readme = DOCS[0].read_text()
    missing = [path.name for path in DOCS[1:] if f"](docs/{path.name})" not in readme]
    assert not missing, f"guides the README does not link: {missing}"
