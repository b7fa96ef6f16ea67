"""Animations and videos on the page, as a person meets them in a real browser (Debian's Chromium
driven by Playwright against the app served by waitress): the two sides of a GIF, WebP or APNG
comparison play in step with play/pause and Before/After labels; a video's players start muted with
a Sound box, its sliders are labelled and "Made with" names the model by its title. Screenshots are
kept under test-artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.media import write_animation, write_clip
from tests.test_page_before_sending import DESKTOP, serious_accessibility_problems
from tests.test_page_first_minute import SLOW_MS, shot

pytestmark = pytest.mark.browser
FAST = "realesr-animevideov3"
FAST_TITLE = "Real-ESRGAN animevideo v3 (fast)"
# Both canvases of a card, sampled together for a while: each side's frame index and how far the
# result, drawn down to the original's size, is from the original shown with it and (when the frame
# just changed) from the original's frame before (mean absolute difference of RGBA values, 0..255).
SAMPLE_JS = """async (card) => {
    const [before, after] = card.querySelectorAll('canvas');
    const pixels = (canvas) => { const c = document.createElement('canvas');
        c.width = before.width; c.height = before.height;
        const g = c.getContext('2d'); g.drawImage(canvas, 0, 0, c.width, c.height);
        return g.getImageData(0, 0, c.width, c.height).data; };
    const distance = (a, b) => { let s = 0; for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
        return s / a.length; };
    const samples = []; let previous = null;
    for (let i = 0; i < 40; i++) {
        const a = pixels(before), b = pixels(after);
        const changed = previous && previous.frame !== before.dataset.frame;
        samples.push({ before: before.dataset.frame, after: after.dataset.frame, apart: distance(a, b),
                       fromPrevious: changed ? distance(previous.pixels, b) : null });
        previous = { frame: before.dataset.frame, pixels: a };
        await new Promise((ok) => setTimeout(ok, 45));
    }
    return samples;
}"""


def test_the_two_sides_of_an_animation_play_in_step_with_play_pause_and_labels(serve, browser, tmp_path):
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(serve(PRECISION="fp32"))
    page.get_by_role("radio", name="2×").check()
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    delays = (120, 160, 100, 200, 140)
    files = [write_animation(tmp_path / "a.gif", "GIF", delays), write_animation(tmp_path / "b.webp", "WEBP", delays),
             write_animation(tmp_path / "c.png", "PNG", delays)]
    page.set_input_files("#file", [str(f) for f in files])
    expect(page.get_by_role("button", name="Upscale")).to_be_enabled(timeout=SLOW_MS)
    page.get_by_role("button", name="Upscale").click()
    expect(page.get_by_role("link", name=re.compile(r"^Download [abc]_x2\."))).to_have_count(3, timeout=SLOW_MS)
    for path in files:
        card = page.locator("#jobs .job", has=page.get_by_role("heading", name=path.name))
        expect(card.get_by_role("img", name=f"{path.name}, the original")).to_be_visible()
        expect(card.get_by_role("img", name=f"{path.name} upscaled, 82×66")).to_be_visible()
        expect(card.locator(".video-stage .label-before")).to_have_text("Before")
        expect(card.locator(".video-stage .label-after")).to_have_text("After")
        expect(card.locator(".video-stage .label-before")).to_be_visible()
        page.wait_for_function("(card) => card.querySelector('canvas').dataset.frame !== undefined",
                               arg=card.element_handle(), timeout=30_000)
        samples = card.evaluate(SAMPLE_JS)
        assert all(s["before"] == s["after"] for s in samples), (path.name, samples)
        assert len({s["before"] for s in samples}) >= 3, (path.name, samples)  # it plays
        # The result shows the original's frame of the moment: closer to it than to the frame before.
        changes = [(s["apart"], s["fromPrevious"]) for s in samples if s["fromPrevious"] is not None]
        assert len(changes) >= 2 and all(now < before for now, before in changes), (path.name, changes)
        pause = card.get_by_role("button", name="Pause")
        pause.click()
        expect(card.get_by_role("button", name="Play")).to_be_visible()
        held = card.evaluate(SAMPLE_JS)
        assert len({(s["before"], s["after"]) for s in held}) == 1, (path.name, held)
        card.get_by_role("button", name="Play").click()
        expect(card.get_by_role("slider", name="Position")).to_be_visible()
        expect(card.get_by_role("slider", name="Before / after")).to_be_visible()
        expect(card.get_by_role("checkbox", name="Sound")).to_be_hidden()  # no sound in an animation
    shot(page, "animations")
    assert serious_accessibility_problems(page) == []


def test_a_video_starts_muted_with_a_sound_box_labelled_sliders_and_the_models_title(serve, browser, tmp_path):
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(serve(PRECISION="fp32"))
    page.get_by_role("radio", name="2×").check()
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    page.set_input_files("#file", str(write_clip(tmp_path / "clip.mp4", subtitle="", frames=12)))
    # Before sending: the model by its title, the time for its 12 frames, and a thumbnail of the first.
    row = page.locator("#selected li")
    expect(row).to_contain_text(re.compile(r"video, 64×48 → 128×96, 12 frames: about \d+ (s|min)"),
                                timeout=SLOW_MS)
    expect(row.locator(".plan")).to_contain_text(f"Will use {FAST_TITLE}")
    page.wait_for_function("""() => { const img = document.querySelector('#selected img');
        return img.src.startsWith('data:image/png') && img.complete && img.naturalWidth >= 64; }""")
    expect(page.get_by_role("button", name="Upscale")).to_be_enabled(timeout=SLOW_MS)
    page.get_by_role("button", name="Upscale").click()
    expect(page.get_by_role("link", name=re.compile(r"^Download clip_x2\.mp4"))).to_be_visible(timeout=SLOW_MS)
    card = page.locator("#jobs .job.done")
    page.wait_for_function("() => [...document.querySelectorAll('#jobs video')].every((v) => v.readyState >= 2)",
                           timeout=30_000)
    sound = card.get_by_role("checkbox", name="Sound")
    expect(sound).not_to_be_checked()
    assert card.evaluate("c => [...c.querySelectorAll('video')].map((v) => v.muted)") == [True, True]
    sound.check()
    # The result's sound only: the original stays muted, so one sound plays.
    assert card.evaluate("c => [...c.querySelectorAll('video')].map((v) => v.muted)") == [True, False]
    expect(card.get_by_role("slider", name="Position")).to_be_visible()
    expect(card.get_by_role("slider", name="Before / after")).to_be_visible()
    expect(card.locator(".video-stage .label-before")).to_be_visible()
    made = card.locator(".fact-how")
    expect(made).to_contain_text(f"{FAST_TITLE} at 2×")
    assert FAST not in made.inner_text()
    shot(page, "video")
    assert serious_accessibility_problems(page) == []
