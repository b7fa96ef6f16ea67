"""Compare models on the page, in a real browser (Debian's Chromium driven by Playwright against the
app served by waitress, real weights): one chosen image and its proposed region; a new region drawn
and dragged with the pointer, then resized and moved with the keyboard; the models to try trimmed;
the candidates side by side at one zoom with their titles and times; one click that upscales the
whole image with the chosen one. axe-core finds no serious or critical problem with the panel open."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.pages import ESTIMATE_MS, choose
from tests.test_page_before_sending import DESKTOP, image, serious_accessibility_problems

pytestmark = pytest.mark.browser
DONE_MS = 400_000
SIZE = (100, 72)  # larger than the proposed region (64 x 48), so the box can move
REGION = re.compile(r"^(\d+) by (\d+) pixels, (\d+) from the left and (\d+) from the top$")


def region(slider) -> tuple[int, ...]:
    found = REGION.match(slider.get_attribute("aria-valuetext") or "")
    assert found, slider.get_attribute("aria-valuetext")
    return tuple(int(v) for v in found.groups())


def test_compare_models_then_one_click_upscales_with_the_chosen_one(serve, browser, tmp_path):
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(serve(PRECISION="fp32", PREVIEW_MIN_SECONDS=1e9))
    page.get_by_role("checkbox", name="Anime / illustration").check()
    choose(page, image(tmp_path, "bird.png", SIZE))
    page.get_by_role("button", name="Compare models").click()

    panel = page.get_by_role("region", name="Compare models")
    proposed = re.compile("^The box shows the most detailed region")
    expect(panel.get_by_role("status")).to_have_text(proposed, timeout=ESTIMATE_MS)
    box = panel.get_by_role("slider", name="Region to compare")
    width, height, x, y = region(box)
    assert (width, height) == (64, 48) and x + width <= SIZE[0] and y + height <= SIZE[1]

    # The pointer draws a box across the image, then drags it; the keyboard resizes and moves it.
    picture = panel.get_by_role("img", name=re.compile("with the region box over it"))
    picture.scroll_into_view_if_needed()
    shown = picture.bounding_box()
    zoom = shown["width"] / SIZE[0]

    def drag(start: tuple[int, int], end: tuple[int, int]) -> None:
        page.mouse.move(shown["x"] + start[0] * zoom, shown["y"] + start[1] * zoom)
        page.mouse.down()
        page.mouse.move(shown["x"] + end[0] * zoom, shown["y"] + end[1] * zoom, steps=4)
        page.mouse.up()

    drag((10, 10), (70, 50))
    assert region(box) == (60, 40, 10, 10)
    drag((40, 30), (50, 35))
    assert region(box) == (60, 40, 20, 15)
    box.focus()
    for key in ["Shift+ArrowLeft"] * 4 + ["Shift+ArrowUp"] * 4 + ["ArrowRight", "ArrowRight", "ArrowDown"]:
        page.keyboard.press(key)
    moved = (56, 36, 22, 16)
    assert region(box) == moved
    expect(panel.locator("#crop-words")).to_contain_text("56 by 36 pixels, 22 from the left and 16 from the top")

    # The slow general-purpose models are left out: three quick ones stay.
    models = panel.get_by_role("group", name="Models to try")
    for slow in models.get_by_role("checkbox", name=re.compile("x4plus")).all():
        slow.uncheck()
    expect(models.get_by_role("checkbox", checked=True)).to_have_count(3)
    with page.expect_response(lambda r: r.url.endswith("/api/compare"), timeout=DONE_MS) as answer:
        panel.get_by_role("button", name="Compare", exact=True).click()
        expect(panel.get_by_role("status")).to_have_text(re.compile("^Trying 3 models"))
    sent = answer.value.json()
    assert answer.value.status == 200, sent
    assert sent["crop"] == dict(zip(("width", "height", "x", "y"), moved, strict=True))

    # Side by side at one zoom, pixels as they are, each with its title and times, and the original.
    candidates = panel.get_by_role("list", name="Candidates")
    expect(candidates.get_by_role("listitem")).to_have_count(4)
    expect(candidates.get_by_role("img", name="The original region, enlarged without smoothing")).to_be_visible()
    pictures = candidates.get_by_role("img", name=re.compile(": the region upscaled$"))
    expect(pictures).to_have_count(3)
    page.wait_for_function("""() => [...document.querySelectorAll('#candidates img')]
        .every(img => img.complete && img.naturalWidth > 0)""")
    shown = pictures.evaluate_all("""imgs => imgs.map(img => [img.naturalWidth, img.naturalHeight,
        Math.round(img.getBoundingClientRect().width), getComputedStyle(img).imageRendering])""")
    assert {tuple(s) for s in shown} == {(2 * moved[0], 2 * moved[1], shown[0][2], "pixelated")}, shown
    for candidate in sent["candidates"]:
        item = candidates.get_by_role("listitem").filter(has_text=candidate["title"])
        expect(item).to_contain_text("This region: ")
        expect(item).to_contain_text("the whole image: about ")
    assert serious_accessibility_problems(page) == []

    # One click upscales the whole image with that model; its card follows it to the end.
    chosen = next(c for c in sent["candidates"] if c["model"] == "realcugan-x2-no-denoise")
    panel.get_by_role("button", name=f"Upscale with {chosen['title']}").click()
    expect(panel).to_be_hidden()
    card = page.locator(".job", has_text="bird.png")
    expect(card.get_by_role("link", name=re.compile(r"^Download bird_x2\.png"))).to_be_visible(timeout=DONE_MS)
    expect(card.locator(".fact-how")).to_contain_text(chosen["title"])
