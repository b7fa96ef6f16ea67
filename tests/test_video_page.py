"""Videos on the page in a real browser (Debian's Chromium driven by Playwright against the app
served by waitress): the viewer (static/js/video.js) plays the original and the result in step
under the page's own CSP; a person chooses a clip in the file input, follows its frames, compares
and downloads an MP4 with its sound; a video over its own byte limit is refused before sending and
an animated GIF is taken."""

from __future__ import annotations

import re
import time
from pathlib import Path

import av
import pytest
from playwright.sync_api import expect

from tests.media import packets, write_animation, write_clip
from tests.test_page_before_sending import AXE, DESKTOP, serious_accessibility_problems

pytestmark = pytest.mark.browser
FRAMES = 24
# The first job of a fresh app measures this CPU once and may convert the model (minutes on a loaded
# 2-core machine): long timeouts, which only a broken page reaches.
JOB_MS = 400_000


def test_the_viewer_plays_before_and_after_in_step(serve, page, tmp_path):
    server = serve(PRECISION="fp32")
    clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=24)
    response = page.request.post(f"{server}/api/jobs", multipart={
        "scale": "2", "file": {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": clip.read_bytes()}})
    assert response.status == 202, response.text()
    job_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while (job := page.request.get(f"{server}/api/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.2)
    assert job["status"] == "done", job["error"]
    page.goto(server + "/")
    state = page.evaluate("""async (job) => {
        const { showVideoResult, isMovingJob } = await import("/static/js/video.js");
        const box = document.createElement("div");
        document.body.append(box);
        showVideoResult(box, job);
        const videos = [...box.querySelectorAll("video")];
        await Promise.all(videos.map((v) => v.readyState >= 2 ? null :
            new Promise((ok) => v.addEventListener("loadeddata", ok, { once: true }))));
        await new Promise((ok) => setTimeout(ok, 800));
        return { moving: isMovingJob(job), videos: videos.map((v) => ({ time: v.currentTime, width: v.videoWidth,
                 error: v.error && v.error.code, paused: v.paused })),
                 split: getComputedStyle(videos[1]).clipPath };
    }""", job)
    assert state["moving"] and len(state["videos"]) == 2
    before, after = state["videos"]
    # Display widths: the clip has 4:3 pixels (64 and 128 coded), kept by the result.
    assert (before["width"], after["width"]) == (85, 171) and not before["error"] and not after["error"]
    assert not before["paused"] and not after["paused"] and after["time"] > 0
    assert abs(before["time"] - after["time"]) < 0.25
    assert "inset" in state["split"]


# The page itself: a person chooses a clip, presses Upscale, follows its frames, compares and downloads.

def choose_clip(page, path: Path, scale: str = "2"):
    page.check(f'input[name="scale"][value="{scale}"]')
    page.set_input_files("#file", str(path))


def test_a_clip_from_the_file_input_to_a_downloaded_mp4_with_its_sound(serve, page, tmp_path):
    """Slow on purpose (STEP_DELAY at each of a frame's ~19 network steps: at least 9 s for the clip,
    polled every 0.5 s), so the bar's verdict is the same on any CPU."""
    server = serve(PRECISION="fp32", STEP_DELAY=0.02, PREVIEW_MIN_SECONDS=0)  # a preview of the first frames
    clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=FRAMES)
    page.goto(server)
    # The picker offers what the server takes: its images and its videos and animations.
    accept = page.locator("#file").get_attribute("accept").split(",")
    limits = page.request.get(f"{server}/api/models").json()
    assert set(limits["limits"]["input_types"] + limits["video_limits"]["accept"]) == set(accept)
    choose_clip(page, clip)
    row = page.locator("#selected li")
    # Read from the file before sending: its frame size and count, the model and the time.
    expect(row).to_contain_text(re.compile(rf"video, 64×48 → 128×96, {FRAMES} frames: about \d+ (s|min)"))
    expect(row.locator(".plan")).to_contain_text(re.compile(r"^Will use Real-ESRGAN"))
    page.wait_for_function("() => document.querySelector('#selected img').src.startsWith('data:image/png')")
    upscale = page.get_by_role("button", name="Upscale")
    expect(upscale).to_be_enabled()
    page.evaluate("""() => { window.seen = { values: new Set(), words: new Set(), details: new Set() };
        setInterval(() => { const bar = document.querySelector('#jobs progress');
                            if (!bar) return;
                            window.seen.values.add(bar.value);
                            window.seen.words.add(bar.getAttribute('aria-valuetext'));
                            window.seen.details.add(document.querySelector('#jobs .job-detail').textContent); }, 30); }""")
    upscale.click()
    expect(page.locator("#form-message")).to_have_text("Sent 1 video")
    expect(page.get_by_role("progressbar", name="clip.mp4")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel clip.mp4")).to_be_visible()
    # The first frames upscaled play while the rest is worked (a short MP4 with its own name).
    preview = page.get_by_label("Quick preview of clip.mp4: the first frames upscaled")
    expect(preview).to_be_visible(timeout=JOB_MS)
    page.wait_for_function("""() => { const v = document.querySelector('#jobs .preview-motion video');
        return v && v.readyState >= 2 && v.videoHeight === 96; }""", timeout=30_000)
    download = page.get_by_role("link", name=re.compile(r"^Download clip_x2\.mp4 \(MP4, 128×96, "))
    expect(download).to_be_visible(timeout=JOB_MS)
    seen = page.evaluate("() => Object.fromEntries(Object.entries(window.seen).map(([k, v]) => [k, [...v]]))")
    between = [v for v in seen["values"] if 0 < v < 1]
    assert len(between) >= 3, f"the bar showed only {sorted(seen['values'])}"
    frames_said = {w for w in seen["words"] if w and re.search(rf"frame \d+ of {FRAMES}$", w)}
    assert len(frames_said) >= 3, seen["words"]
    assert any(re.search(rf"frame \d+ of {FRAMES}", d) and "left" in d for d in seen["details"]), seen["details"]

    # Before and after: two players with their names, playing in step; no image slider.
    before = page.get_by_label("clip.mp4, the original")
    after = page.get_by_label("clip.mp4 upscaled, 128×96")
    expect(before).to_be_visible()
    expect(after).to_be_visible()
    expect(page.locator("#jobs .viewer")).to_be_hidden()
    page.wait_for_function("""() => [...document.querySelectorAll('#jobs video')]
        .every((v) => v.readyState >= 2 && !v.paused && v.currentTime > 0)""", timeout=30_000)
    assert page.get_by_role("button", name="Pause").is_visible()
    page.evaluate(AXE.read_text())  # evaluated, not a script tag: the page keeps its own CSP
    assert serious_accessibility_problems(page) == []

    with page.expect_download() as caught:
        download.click()
    assert caught.value.suggested_filename == "clip_x2.mp4"
    saved = tmp_path / "saved.mp4"
    caught.value.save_as(saved)
    with av.open(str(saved)) as result:
        assert "mp4" in result.format.name
        stream = result.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (128, 96)
        assert sum(1 for _ in result.decode(stream)) == FRAMES
    assert packets(saved, "audio") == packets(clip, "audio") != []


def test_a_video_over_its_limit_is_refused_before_sending_and_a_gif_is_taken(serve, browser, tmp_path):
    clip = write_clip(tmp_path / "long.mp4", subtitle="", frames=FRAMES)
    limit = clip.stat().st_size // 2
    server = serve(PRECISION="fp32", MAX_VIDEO_BYTES=limit)
    page = browser.new_context(**DESKTOP).new_page()  # axe is injected: the context bypasses the CSP
    posted = []
    page.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)
    page.goto(server)
    choose_clip(page, clip)
    row = page.locator("#selected li")
    expect(row).to_contain_text(re.compile(r"larger than the server takes for a video \(.+ per upload\)"))
    expect(row.locator(".fix")).to_have_text("Shorten it, or lower its resolution or bit rate, then choose it again.")
    upscale = page.get_by_role("button", name="Upscale")
    expect(upscale).to_be_disabled()
    page.get_by_role("button", name="Remove long.mp4").click()

    # An animated GIF (under the video limit) is now taken, sent and shown as an animation.
    gif = write_animation(tmp_path / "anim.gif", "GIF")
    assert gif.stat().st_size < limit
    choose_clip(page, gif)
    expect(row).to_contain_text(re.compile(r"animated image, 41×33 → 82×66, 5 frames: about \d+ (s|min)"))
    expect(upscale).to_be_enabled()
    assert posted == []
    upscale.click()
    expect(page.locator("#form-message")).to_have_text("Sent 1 animated image")
    expect(page.get_by_role("link", name=re.compile(r"^Download anim_x2\.gif \(GIF, 82×66, "))).to_be_visible(
        timeout=JOB_MS)
    expect(page.get_by_role("img", name="anim.gif upscaled, 82×66")).to_be_visible()
    assert serious_accessibility_problems(page) == []
    assert [url.endswith("/api/jobs") for url in posted] == [True]
