"""Writing one result while the next is made (`esrgan.io.writer`), and the command line that uses it."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from esrgan.errors import InvalidImageError
from esrgan.io.writer import ResultWriter
from tests.conftest import crop_of
from tests.test_cli import run_cli

WAIT = 60  # seconds an event may take before the test calls it a hang (never reached when it works)


def test_the_caller_goes_on_while_a_write_runs_and_leaving_waits_for_it():
    lines, release, started = [], threading.Event(), threading.Event()

    def slow_write() -> str:
        started.set()
        assert release.wait(WAIT)
        return "first written"

    with ResultWriter(lines.append, lines.append) as writer:
        writer.submit("first", slow_write)  # returns while the write is still blocked
        assert started.wait(WAIT)
        assert lines == [], "the write is still running: nothing reported yet"
        release.set()  # the caller's "next image" is done; the write may finish now
    assert lines == ["first written"]  # leaving the block waited for it


def test_one_write_at_a_time_in_order_and_each_reported_as_it_ends():
    lines, running, overlaps = [], [], []

    def write(name: str):
        def run() -> str:
            running.append(name)
            overlaps.append(len(running))
            running.remove(name)
            return f"{name} written"
        return run

    with ResultWriter(lines.append, lines.append) as writer:
        for name in ("a", "b", "c"):
            writer.submit(name, write(name))
    assert lines == ["a written", "b written", "c written"]
    assert overlaps == [1, 1, 1]


def test_a_failed_write_is_reported_and_counted_and_the_run_goes_on():
    done, failed = [], []

    def bad() -> str:
        raise InvalidImageError("the result cannot be encoded")

    with ResultWriter(done.append, failed.append) as writer:
        writer.submit("photo.png", bad)
        writer.submit("next.png", lambda: "next written")
    assert failed == ["error: photo.png: the result cannot be encoded"]
    assert done == ["next written"] and writer.failures == 1


def test_an_unexpected_error_reaches_the_caller_at_the_next_submit():
    def full_disk() -> str:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"), ResultWriter(print, print) as writer:
        writer.submit("a.png", full_disk)
        writer.submit("b.png", lambda: "never written")


def test_cli_folder_run_writes_every_good_file_and_reports_the_bad_one(tmp_path, weights_dir):
    """Three inputs, the middle one not an image: both others are written whole (the last one's
    write is waited for before the process ends), one error line, exit status 1."""
    inputs = []
    for name, box in [("coffee.png", (80, 80, 107, 99)), ("chelsea_head.png", (100, 100, 119, 113))]:
        crop_of(name, box).save(tmp_path / name)
        inputs.append(str(tmp_path / name))
    (tmp_path / "notes.png").write_text("not an image")
    inputs.insert(1, str(tmp_path / "notes.png"))
    out = tmp_path / "out"
    done = run_cli("upscale", *inputs, "-s", "4", "--model", "realesr-animevideov3", "-o", str(out),
                   env_weights=weights_dir)
    assert done.returncode == 1, done.stderr
    with Image.open(out / "coffee_x4.png") as image:
        assert image.size == (108, 76)
        image.load()
    with Image.open(out / "chelsea_head_x4.png") as image:
        assert image.size == (76, 52)
        image.load()
    assert sorted(p.name for p in out.iterdir()) == ["chelsea_head_x4.png", "coffee_x4.png"]  # no temp file left
    written = [line for line in done.stdout.splitlines() if " -> " in line]
    assert [line.split(" -> ")[0] for line in written] == [inputs[0], inputs[2]]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "notes.png" in errors[0]
