"""The result viewer and the page's accessible contract, as a person meets them in a real browser:
drag and click on the comparison, find every control by role and name, read the text at a legible
contrast, and load the page without a 404 or a console error. Debian's Chromium driven by Playwright
against the app served by waitress."""

from __future__ import annotations

import re
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.conftest import crop_of
from tests.pages import FAST, choose

pytestmark = pytest.mark.browser
# The first job of a fresh app may measure this CPU once (about 40 s on a loaded 2-core EPYC).
DONE_TIMEOUT_MS = 180_000
WCAG_AA = 4.5

# The WCAG 2 contrast ratio of a colour of an element (``colour``: its text, or its border) against
# the colour really painted behind it: from the element (for text) or its parent (for a border)
# upwards, the first opaque background with the translucent ones above it composited (alpha-blended).
CONTRAST_JS_TEMPLATE = """el => {
    const parse = s => { const m = s.match(/[\\d.]+/g).map(Number);
                         return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
    const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
    const layers = [];
    for (let node = START; node; node = node.parentElement) {
        const bg = parse(getComputedStyle(node).backgroundColor);
        if (bg[3] > 0) layers.push(bg);
        if (bg[3] >= 1) break;
    }
    let back = [255, 255, 255, 1];
    for (const layer of layers.reverse()) back = over(layer, back);
    const fore = over(parse(getComputedStyle(el).COLOUR), back);
    const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const [a, b] = [lum(fore), lum(back)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""
CONTRAST_JS = CONTRAST_JS_TEMPLATE.replace("START", "el").replace("COLOUR", "color")
BORDER_CONTRAST_JS = CONTRAST_JS_TEMPLATE.replace("START", "el.parentElement").replace("COLOUR", "borderTopColor")


def photo(tmp_path, name: str = "bird.png", size: tuple[int, int] = (64, 48)):
    path = tmp_path / name
    crop_of("Set5/bird.png", (40, 40, 40 + size[0], 40 + size[1])).save(path)
    return path


def upscale_to_done(page, server, path, scale="2", model=FAST):
    page.goto(server)
    choose(page, path, scale, model)
    page.get_by_role("button", name=re.compile("Upscale")).click()
    expect(page.get_by_role("link", name=re.compile(f"^Download {re.escape(path.stem)}_x"))).to_be_visible(
        timeout=DONE_TIMEOUT_MS)
    return page.locator(".job.done .compare")


def test_drag_on_the_image_moves_the_split_and_a_click_jumps_it(serve, page, tmp_path):
    compare = upscale_to_done(page, serve(), photo(tmp_path))
    slider = page.get_by_role("slider", name="Before / after")
    expect(slider).to_have_value("50")
    compare.scroll_into_view_if_needed()  # a small result is fitted to the card: large, maybe below the fold
    box = compare.bounding_box()
    assert box["width"] >= 100, f"the comparison is only {box['width']} px wide"
    y = box["y"] + box["height"] / 2

    # A drag from the middle to 20% of the width, in small steps as a hand would.
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.2, y, steps=12)
    page.mouse.up()
    assert abs(float(slider.input_value()) - 20) <= 5, f"the drag left the split at {slider.input_value()}"
    # What the eye sees follows the slider: the line sits at the split, the original is cut there.
    line = page.locator(".job.done .compare-line").bounding_box()
    assert abs(line["x"] + line["width"] / 2 - (box["x"] + box["width"] * 0.2)) <= 0.05 * box["width"]
    before = page.locator(".job.done img.before").evaluate("img => getComputedStyle(img).clipPath")
    assert re.search(r"inset\(0(px)? (calc\()?", before), before

    # A click elsewhere jumps the split there.
    page.mouse.click(box["x"] + box["width"] * 0.7, y)
    assert abs(float(slider.input_value()) - 70) <= 5, f"the click left the split at {slider.input_value()}"


def test_every_control_is_found_by_role_and_name(serve, page, tmp_path):
    server = serve()
    path = photo(tmp_path, "coffee cup.png", (64, 64))
    page.goto(server)
    file_input = page.locator('input[type="file"]')
    expect(file_input).to_have_count(1)
    upscale = page.get_by_role("button", name=re.compile("Upscale"))
    expect(upscale).to_be_disabled()  # nothing chosen yet
    # A job of a few seconds (x4plus on 64 px), so that its running state can be seen.
    choose(page, path, scale="4", model="realesrgan-x4plus")
    upscale.click()
    expect(page.get_by_role("progressbar", name="coffee cup.png")).to_have_count(1)
    expect(page.get_by_role("button", name="Cancel coffee cup.png")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel coffee cup.png")).to_be_enabled()
    # The link names the file it saves (the server's name for it), its format and size.
    download = page.get_by_role("link", name=re.compile(r"^Download coffee_cup_x4\.png \(PNG, 256×256, \d+ KB\)$"))
    expect(download).to_be_visible(timeout=DONE_TIMEOUT_MS)
    expect(download).to_have_attribute("href", re.compile(r".+"))
    expect(page.get_by_role("button", name="Cancel coffee cup.png")).to_be_hidden()
    expect(page.get_by_role("slider", name="Before / after")).to_be_visible()


def test_text_and_buttons_have_a_contrast_of_at_least_4_5(serve, page, tmp_path):
    page.goto(serve())
    choose(page, photo(tmp_path))  # the primary button as a person sees it: enabled
    checks = {
        "primary button": page.get_by_role("button", name=re.compile("Upscale")),
        "body text": page.locator(".drop-title"),
        "heading": page.locator("h1"),
        "muted text on the page": page.locator(".tagline"),
        "muted text in a card": page.locator(".drop-hint"),
        "muted empty-list note": page.locator("#empty"),
        "field label": page.locator("legend").first,
        "secondary button": page.locator("#selected .remove").first,
    }
    ratios = {what: round(locator.evaluate(CONTRAST_JS), 2) for what, locator in checks.items()}
    low = {what: ratio for what, ratio in ratios.items() if ratio < WCAG_AA}
    assert not low, f"below {WCAG_AA}:1: {low} (all: {ratios})"


def test_the_page_loads_its_icon_and_logs_no_console_error_through_a_job(serve, page, tmp_path):
    server = serve()
    errors, failures = [], []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: response.status >= 400 and failures.append(
        f"{response.status} {response.url}"))

    upscale_to_done(page, server, photo(tmp_path))
    icon = page.locator('link[rel~="icon"]').get_attribute("href")
    for url in (f"{server}/favicon.ico", server + icon):
        with urllib.request.urlopen(url) as response:  # follows the redirect to the icon itself
            assert response.status == 200 and response.headers["Content-Type"].startswith("image/"), url
    assert not failures, failures
    assert not errors, errors
