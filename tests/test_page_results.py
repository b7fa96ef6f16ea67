"""Issue 20, the page after Upscale, in a real browser (Debian's Chromium driven by Playwright against
the app served by waitress): a batch lists its cards in the order it works, says its total and drops
"Sent ..." when it ends; cards speak plainly and name the real file; the viewer lets the wheel and
vertical swipes scroll the page, zooms with Ctrl+wheel, fits small results, shows a checkerboard
under transparency on both sides with no bleed; axe-core finds no serious or critical problem on a
result at a desktop and a phone size; files not yet accepted by the server survive a reload."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.test_page_before_sending import (
    DESKTOP,
    ESTIMATE_MS,
    FAST,
    PHONE,
    image,
    serious_accessibility_problems,
    upscale_button,
)
from web.http.views import RESTART_NOTE

pytestmark = pytest.mark.browser
DONE_MS = 400_000
CHECKER_STEP = 140 - 94  # the two greys of the viewer's checkerboard (style.css)


def half_transparent(tmp_path, name: str, size: int = 40) -> str:
    """A flat red square at 50% opacity: what shows through it is the checkerboard, and only once."""
    path = tmp_path / name
    Image.new("RGBA", (size, size), (200, 40, 40, 128)).save(path)
    return str(path)


def choose(page, paths, scale="2"):
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    if scale is not None:
        page.get_by_role("radio", name=f"{scale}×").check()
    page.set_input_files("#file", paths)
    expect(upscale_button(page)).to_be_enabled(timeout=ESTIMATE_MS)


def test_a_batch_on_a_desktop_from_upscale_to_the_viewer(serve, browser, tmp_path):
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(serve())
    paths = [image(tmp_path, "a-first.png", (33, 25)), image(tmp_path, "b-second.png", (21, 30)),
             half_transparent(tmp_path, "c-clear.png")]
    choose(page, paths)
    upscale_button(page).click()
    # Top-down in the order the batch works (first file first), and the batch says its size.
    expect(page.locator(".job-name")).to_have_text(["a-first.png", "b-second.png", "c-clear.png"])
    expect(page.locator("#batch-summary")).to_have_text(re.compile(r"^Batch of 3: "))
    expect(page.locator("#form-message")).to_have_text("Sent 3 images")
    expect(page.get_by_role("link", name=re.compile("^Download [abc]-"))).to_have_count(3, timeout=DONE_MS)
    expect(page.locator("#batch-summary")).to_have_text("Batch of 3: 3 done.")
    expect(page.locator("#form-message")).to_have_text("")  # "Sent 3 images" went with the batch

    # Plain words on the card: the real file, where it ran, no "cpu bf16" or "1 tile".
    first = page.locator(".job", has_text="a-first.png")
    download = first.get_by_role("link", name=re.compile(r"^Download a-first_x2\.png \(PNG, 66×50, \d+ KB\)$"))
    expect(download).to_be_visible()
    how = first.locator(".fact-how").inner_text()
    assert "on the processor" in how and not re.search(r"\b(cpu|cuda|bf16|fp16|fp32)\b", how), how
    assert "tile" not in first.locator(".fact-time").inner_text()

    # The comparison is a named group with the slider inside.
    group = page.get_by_role("group", name="Before and after: a-first.png")
    expect(group.get_by_role("slider", name="Before / after")).to_be_visible()
    expect(group.get_by_role("img", name=re.compile("^a-first.png: the original left of the split"))).to_be_visible()
    assert serious_accessibility_problems(page) == []

    # A small result (66 x 50) fits the card instead of sitting tiny at 1:1.
    compare = first.locator(".compare")
    width = compare.evaluate("el => el.getBoundingClientRect().width / el.parentElement.clientWidth")
    height = compare.evaluate("el => el.getBoundingClientRect().height / innerHeight")
    assert width > 0.95 or height > 0.7, (width, height)

    # The plain wheel over the image scrolls the page; Ctrl+wheel (a trackpad's pinch) zooms.
    compare.scroll_into_view_if_needed()
    box = compare.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    scrolled = page.evaluate("scrollY")
    page.mouse.wheel(0, 200)
    page.wait_for_function(f"() => scrollY > {scrolled}")
    expect(first.locator(".zoom-value")).to_have_text("1×")
    box = compare.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    expect(first.locator(".zoom-value")).not_to_have_text("1×")

    # Transparency: over a checkerboard on both sides, and the result does not show through the
    # original. Through 50% opacity the checkerboard's two greys differ by half their step; if the
    # result showed through too, by a quarter.
    clear = page.locator(".job", has_text="c-clear.png").locator(".compare")
    clear.scroll_into_view_if_needed()
    shot = Image.open(io.BytesIO(clear.screenshot())).convert("RGB")
    w, h = shot.size
    for side, xs in (("before", range(int(w * 0.05), int(w * 0.40))), ("after", range(int(w * 0.60), int(w * 0.95)))):
        greens = [shot.getpixel((x, h // 2))[1] for x in xs]
        step = max(greens) - min(greens)
        assert abs(step - CHECKER_STEP / 2) <= 5, f"{side}: the checkerboard shows a step of {step}"


def test_a_result_on_a_phone_fits_scrolls_and_has_no_serious_accessibility_problem(serve, browser, tmp_path):
    page = browser.new_context(**PHONE).new_page()
    page.goto(serve())
    # Asked by width, GPS kept: the page sends width and keep_gps (not scale), the download names the size.
    page.get_by_role("radio", name="Other size").check()
    page.get_by_role("combobox", name="Size by").select_option("width")
    page.get_by_role("spinbutton", name="Size").fill("61")
    page.get_by_role("checkbox", name="Keep GPS location").check()
    choose(page, [image(tmp_path, "tiny.png", (24, 24))], scale=None)
    expect(page.locator("#selected li")).to_contain_text("24×24 → 61×61")
    # The form's text fields as sent (Chromium does not hand a multipart body with a file to Playwright).
    page.evaluate("""() => { const send = window.fetch; window.sentFields = [];
        window.fetch = (url, init) => { if (init && init.body instanceof FormData) window.sentFields.push(
            Object.fromEntries([...init.body.entries()].filter(([, v]) => typeof v === 'string')));
            return send(url, init); }; }""")
    upscale_button(page).click()
    page.wait_for_function("() => window.sentFields.length === 1")
    fields = page.evaluate("() => window.sentFields[0]")
    assert fields["width"] == "61" and fields["keep_gps"] == "true" and "scale" not in fields, fields
    assert "height" not in fields, fields
    expect(page.get_by_role("link", name=re.compile(r"^Download tiny_61x61\.png \(PNG, 61×61"))).to_be_visible(
        timeout=DONE_MS)
    compare = page.locator(".job.done .compare")
    fitted = compare.evaluate("el => el.getBoundingClientRect().width / el.parentElement.clientWidth")
    assert fitted > 0.95, f"a 61 px result fills only {fitted:.0%} of the card"
    # Vertical swipes are the browser's (they scroll the page); sideways drags move the split.
    assert compare.evaluate("el => getComputedStyle(el).touchAction") == "pan-y"
    expect(page.get_by_text("swipe up or down to scroll the page")).to_be_visible()
    expect(page.get_by_text(re.compile("Ctrl\\+wheel"))).to_be_hidden()
    assert serious_accessibility_problems(page) == []


def test_files_not_yet_accepted_by_the_server_survive_a_reload(serve, browser, tmp_path):
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(serve())
    choose(page, [image(tmp_path, f"keep-{i}.png", (20 + i, 24)) for i in range(3)])
    # The server never sees the first send before the reload: nothing is accepted yet.
    gate = {"open": False}
    page.route("**/api/jobs", lambda route: route.continue_() if gate["open"] or route.request.method != "POST"
               else None)
    upscale_button(page).click()
    expect(page.locator(".job-state", has_text="kept if you reload")).to_have_count(3)
    gate["open"] = True
    page.reload()
    expect(page.get_by_role("link", name=re.compile("^Download keep-"))).to_have_count(3, timeout=DONE_MS)
    expect(page.locator(".job")).to_have_count(3)  # each file once

    # A job the server says it restarted shows the server's note on its card (a restart itself is
    # tested on the server, tests/test_restart.py; here its answer is the server's, marked restarted).
    def restarted(route):
        answer = route.fetch()
        job = answer.json()
        if job.get("original_name") == "keep-1.png":
            job.update(restarted=True, restart_note=RESTART_NOTE)
        route.fulfill(response=answer, json=job)

    page.route("**/api/jobs/*", lambda route: restarted(route) if route.request.method == "GET" else route.continue_())
    page.reload()
    expect(page.locator(".job", has_text="keep-1.png").locator(".job-detail")).to_contain_text(RESTART_NOTE)
    expect(page.locator(".job", has_text="keep-0.png").locator(".job-detail")).not_to_contain_text("restarted")
