"""The page keeps and finishes work in a real browser: reload mid-job, batches past the server's queue,
cancel, per-step progress. Debian's Chromium driven by Playwright against the app served by waitress."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import crop_of
from tests.pages import choose

pytestmark = pytest.mark.browser


def small_images(tmp_path, count: int, size: int = 24) -> list[str]:
    paths = []
    for index in range(count):
        path = tmp_path / f"bird-{index:02d}.png"
        x = 40 + 7 * index
        crop_of("Set5/bird.png", (x, 60, x + size, 60 + size)).save(path)
        paths.append(str(path))
    return paths


def test_reload_mid_job_brings_the_job_back_and_it_ends_with_a_download(serve, page, tmp_path, engine_hooks):
    engine_hooks(delay=1.0)  # 19 steps: the job outlasts the reload on any CPU
    server = serve()
    [path] = small_images(tmp_path, 1, size=48)
    page.goto(server)
    choose(page, [path], scale="4")
    page.get_by_role("button", name=re.compile("Upscale")).click()
    expect(page.get_by_role("progressbar", name="bird-00.png")).to_be_visible()
    page.wait_for_function("() => Object.keys(JSON.parse(localStorage.getItem('remaster.jobs') || '{}')).length")
    page.reload()
    expect(page.get_by_role("progressbar", name="bird-00.png")).to_have_count(1, timeout=15_000)
    expect(page.get_by_role("link", name=re.compile(r"Download bird-00_x4\.png"))).to_be_visible(timeout=150_000)
    # A second tab sees the same job, done.
    other = page.context.new_page()
    other.goto(server)
    expect(other.get_by_role("link", name=re.compile(r"Download bird-00_x4\.png"))).to_be_visible(timeout=30_000)


def test_batch_of_12_ends_with_12_downloads_under_the_default_queue(serve, page, tmp_path):
    server = serve()  # default MAX_QUEUE (8): some sends may be answered 503 and must be retried
    refusals = []
    page.on("response", lambda r: r.status == 503 and refusals.append(r.url))
    page.goto(server)
    choose(page, small_images(tmp_path, 12))
    page.get_by_role("button", name=re.compile("Upscale")).click()
    expect(page.get_by_role("link", name=re.compile("^Download bird-"))).to_have_count(12, timeout=240_000)
    expect(page.locator("#batch-summary")).to_have_text("Batch of 12: 12 done.")


def test_a_full_server_queue_is_retried_until_every_file_is_done(serve, page, tmp_path, engine_hooks):
    engine_hooks(delay=0.1)  # jobs last long enough for the queue of one to fill, on any CPU
    server = serve(MAX_QUEUE=1)
    refusals = []
    page.on("response", lambda r: r.status == 503 and refusals.append(r.url))
    page.goto(server)
    choose(page, small_images(tmp_path, 6, size=40), scale="4")
    page.get_by_role("button", name=re.compile("Upscale")).click()
    expect(page.get_by_role("link", name=re.compile("^Download bird-"))).to_have_count(6, timeout=240_000)
    assert refusals, "the queue of one never filled: the retry path went untested"


def test_cancel_says_cancelling_at_once_and_disables_the_button(serve, page, tmp_path, engine_hooks):
    engine_hooks(delay=0.3)  # 24 steps: still running when cancelled, on any CPU
    server = serve()
    held = []  # the page's DELETE requests, answered only when the test lets them through
    page.route("**/api/jobs/*", lambda route: held.append(route) if route.request.method == "DELETE"
               else route.continue_())
    path = tmp_path / "butterfly.png"
    crop_of("Set5/butterfly.png", (0, 0, 160, 160)).save(path)
    page.goto(server)
    choose(page, [str(path)], scale="4", model="realesrgan-x4plus")
    page.get_by_role("button", name=re.compile("Upscale")).click()
    cancel = page.get_by_role("button", name="Cancel butterfly.png")
    expect(cancel).to_be_enabled()
    page.wait_for_function("() => document.querySelector('.job').className.includes('running')", timeout=150_000)
    cancel.click()
    # At once: the server has not answered (it has not even been asked: the DELETE is held), yet the
    # button is disabled and the words say so.
    expect(cancel).to_be_disabled()
    expect(page.locator(".job-state")).to_have_text("Cancelling...")
    for _ in range(600):  # the request leaves the page (a guard against waiting for ever, not a bound)
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1 and not page.locator(".job.cancelling").count()  # the server's word not heard yet
    held[0].continue_()
    expect(page.locator(".job-state")).to_have_text("Cancelled", timeout=240_000)


def test_a_one_tile_job_progressbar_moves_several_times_before_done(serve, page, tmp_path, engine_hooks):
    """Slow on purpose (24 network steps of 0.3 s), so the verdict is the same on any CPU."""
    engine_hooks(delay=0.3)
    # torch's steps (each block of the network): an ncnn tile, which the CPU's measurement may choose, is one step
    server = serve(BACKEND="torch-cl")
    path = tmp_path / "baby.png"
    crop_of("Set5/baby.png", (200, 200, 264, 264)).save(path)
    page.goto(server)
    choose(page, [str(path)], scale="4", model="realesrgan-x4plus")
    page.evaluate("""() => { window.seen = new Set();
        setInterval(() => { const bar = document.querySelector('progress');
                            if (bar) window.seen.add(bar.value); }, 30); }""")
    page.get_by_role("button", name=re.compile("Upscale")).click()
    expect(page.get_by_role("link", name=re.compile(r"Download baby_x4\.png"))).to_be_visible(timeout=240_000)
    values = page.evaluate("() => [...window.seen]")
    between = [v for v in values if 0 < v < 1]
    assert len(between) >= 3, f"the bar showed only {sorted(values)}"
