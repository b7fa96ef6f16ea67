"""Issue 20, what the page tells before anything is sent, in a real browser (Debian's Chromium driven
by Playwright against the app served by waitress): axe-core finds no serious or critical problem at a
desktop and a phone size; controls have short names and visible borders; the file checks (empty, too
large, not an image, too many pixels) and the server's refusals (a route that cannot be made) disable
Upscale with the reason and the fix; settings are remembered and presets set them; the phone shows no
desktop help and keeps Upscale near the chosen file."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT, crop_of
from tests.test_page_viewer import BORDER_CONTRAST_JS

pytestmark = pytest.mark.browser
AXE = ROOT / "tests" / "vendor" / "axe.min.js"
# bypass_csp: axe is injected as an inline script, which the page's CSP (script-src 'self') forbids.
DESKTOP = {"viewport": {"width": 1366, "height": 768}, "bypass_csp": True}
PHONE = {"viewport": {"width": 390, "height": 844}, "bypass_csp": True, "device_scale_factor": 3,
         "is_mobile": True, "has_touch": True}
NON_TEXT_CONTRAST = 3.0  # WCAG 2.1 SC 1.4.11, a control's boundary against what is around it
FAST = "realesr-animevideov3"
# A first estimate may convert a model's weights (minutes on a loaded 2-core machine): long timeouts.
ESTIMATE_MS = 400_000


def serious_accessibility_problems(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .filter(v => ['serious', 'critical'].includes(v.impact))
        .map(v => ({id: v.id, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))""")


def image(tmp_path, name: str, size: tuple[int, int]) -> str:
    path = tmp_path / name
    crop_of("Set5/bird.png", (40, 40, 40 + size[0], 40 + size[1])).save(path)
    return str(path)


def upscale_button(page):
    return page.get_by_role("button", name="Upscale")


def test_desktop_start_page_checks_what_it_can_before_sending(serve, browser, tmp_path):
    # A pixel limit small enough that a 101 x 101 image passes over it.
    server = serve(MAX_INPUT_PIXELS=10_000)
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(server)
    assert serious_accessibility_problems(page) == []

    # Short names; the hint is a description, not part of the name.
    expect(page.get_by_role("combobox", name="Model", exact=True)).to_have_attribute(
        "aria-describedby", "model-note models-missing")
    expect(page.get_by_role("combobox", name="Noise reduction", exact=True)).to_be_visible()
    # Quality only where the format has one.
    page.get_by_role("combobox", name="Output format").select_option("png")
    expect(page.get_by_role("slider", name="Quality")).to_be_hidden()
    page.get_by_role("combobox", name="Output format").select_option("jpg")
    expect(page.get_by_role("slider", name="Quality")).to_be_visible()
    page.get_by_role("combobox", name="Output format").select_option("png")

    # Control borders stand out from the card (WCAG 1.4.11).
    controls = {"model list": page.get_by_role("combobox", name="Model", exact=True),
                "preset button": page.get_by_role("button", name="Photo 4×"),
                "dropzone": page.locator("#dropzone")}
    ratios = {what: round(c.evaluate(BORDER_CONTRAST_JS), 2) for what, c in controls.items()}
    assert all(r >= NON_TEXT_CONTRAST for r in ratios.values()), ratios

    # The fast model, so that estimates load nothing big; then Upscale stays off while the estimate is
    # on its way (held here), and says so.
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    held, gate = [], {"open": False}
    page.route("**/api/estimate?*", lambda route: route.continue_() if gate["open"] else held.append(route))
    page.set_input_files("#file", image(tmp_path, "fine.png", (40, 30)))
    page.wait_for_function("() => document.querySelector('#form-message').textContent.startsWith('Checking')")
    expect(upscale_button(page)).to_be_disabled()
    gate["open"] = True
    for route in held:
        route.continue_()
    expect(upscale_button(page)).to_be_enabled(timeout=ESTIMATE_MS)

    # Empty, too large, not an image, too many pixels: each says why and how to fix it; none is sent.
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture at all\n")
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(9 * 2**20))  # over the 8 MB upload limit
    page.set_input_files("#file", [str(tmp_path / n) for n in ("empty.png", "notes.png", "huge.png")]
                         + [image(tmp_path, "big.png", (101, 101)), image(tmp_path, "ok.png", (40, 30))])
    rows = page.locator("#selected li")
    expect(rows.filter(has_text="empty.png")).to_contain_text("the file is empty")
    expect(rows.filter(has_text="notes.png")).to_contain_text(  # the types in the server's order
        re.compile(r"not an image or a video: the server takes images \((PNG, JPEG|JPEG, PNG), WebP, BMP, TIFF\) "
                   r"and videos or animations \(MP4, WebM, MKV, MOV, AVI, GIF\)"))
    expect(rows.filter(has_text="huge.png")).to_contain_text("larger than the server takes (8.0 MB per upload)")
    expect(rows.filter(has_text="big.png")).to_contain_text(
        "101×101 is 10,201 pixels: more than the server takes (10,000 pixels)")
    expect(rows.filter(has_text="big.png")).to_contain_text("Shrink or crop it")
    expect(rows.filter(has_text="ok.png")).to_contain_text("40×30 → 160×120", timeout=ESTIMATE_MS)
    # The server's plan, in its words, and what the hand-picked model ignores, before sending.
    plan = rows.filter(has_text="ok.png").locator(".plan")
    expect(plan).to_contain_text(re.compile(r"^Will use .+ \(native 4x\)"))
    expect(plan).to_contain_text("is trained for anime and illustration: the content type is ignored")
    # The files that cannot go are named and never hold back the one that can.
    expect(page.locator("#form-message")).to_have_text(
        "empty.png, notes.png, huge.png and big.png cannot be upscaled as chosen (see the fix next to each); "
        "Upscale sends the other file.")
    expect(upscale_button(page)).to_be_enabled()
    for name in ("empty.png", "notes.png", "huge.png", "big.png"):
        page.get_by_role("button", name=f"Remove {name}").click()
    expect(upscale_button(page)).to_be_enabled()

    # A choice the server's routes cannot make (anime has no medium level at 4x; photos now have every
    # level, and the page follows without a list of its own): marked in the list, refused by the
    # estimate with the reason, Upscale off, and a fix that works.
    page.get_by_role("combobox", name="Model", exact=True).select_option("auto")
    noise = page.get_by_role("combobox", name="Noise reduction", exact=True)
    expect(noise.locator("option[value=medium]")).to_have_text("Medium")  # photos: every level exists
    anime = page.get_by_role("checkbox", name="Anime / illustration")
    anime.check()
    expect(noise.locator("option[value=medium]")).to_have_text(re.compile(r"Medium \(not at 4× for anime\)"))
    noise.select_option("medium")
    expect(rows.filter(has_text="ok.png")).to_contain_text("noise reduction is not available", timeout=ESTIMATE_MS)
    expect(rows.filter(has_text="ok.png").locator(".fix")).to_have_text(
        re.compile(r"^Choose .+ instead\.$"), timeout=ESTIMATE_MS)
    expect(upscale_button(page)).to_be_disabled()
    noise.select_option("none")
    anime.uncheck()
    expect(upscale_button(page)).to_be_enabled(timeout=ESTIMATE_MS)

    # Output by size: a width in pixels (the height follows the aspect), then a factor; the plan says
    # how the server gets there; the field takes the server's scale limits.
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    page.get_by_role("radio", name="Other size").check()
    page.get_by_role("combobox", name="Size by").select_option("width")
    size = page.get_by_role("spinbutton", name="Size")
    size.fill("100")
    size.press("Enter")  # takes the size; sends nothing
    expect(rows.filter(has_text="ok.png")).to_contain_text("40×30 → 100×75", timeout=ESTIMATE_MS)
    expect(plan).to_contain_text(re.compile(r"^Will use .+ \(native 4x\), then Lanczos down to 2\.5x"))
    page.get_by_role("combobox", name="Size by").select_option("factor")
    expect(size).to_have_attribute("max", "8")
    size.fill("6")
    size.press("Enter")
    expect(rows.filter(has_text="ok.png")).to_contain_text("40×30 → 240×180", timeout=ESTIMATE_MS)
    expect(plan).to_contain_text("then Lanczos up to 6x")
    expect(page.get_by_role("checkbox", name="Keep GPS location")).not_to_be_checked()
    page.get_by_role("radio", name="4×").check()
    page.get_by_role("combobox", name="Model", exact=True).select_option("auto")
    expect(upscale_button(page)).to_be_enabled(timeout=ESTIMATE_MS)

    # A preset sets scale, content and noise at once; the choice is remembered across a reload.
    page.get_by_role("button", name="Anime 2×, medium noise reduction").click()
    expect(page.get_by_role("radio", name="2×")).to_be_checked()
    expect(page.get_by_role("checkbox", name="Anime / illustration")).to_be_checked()
    expect(noise).to_have_value("medium")
    page.get_by_role("combobox", name="Output format").select_option("webp")
    page.reload()
    expect(page.get_by_role("radio", name="2×")).to_be_checked()
    expect(page.get_by_role("checkbox", name="Anime / illustration")).to_be_checked()
    expect(noise).to_have_value("medium")
    expect(page.get_by_role("combobox", name="Output format")).to_have_value("webp")
    expect(page.get_by_role("slider", name="Quality")).to_be_visible()

    # A choice the chosen model ignores is said before sending, as the list's description.
    page.get_by_role("combobox", name="Model", exact=True).select_option("realesrgan-x4plus")
    noise.select_option("high")
    expect(noise).to_have_accessible_description(
        re.compile(r"^Real-ESRGAN x4plus has no noise reduction: .High. is ignored with it\.$"))


def test_phone_shows_touch_help_only_and_upscale_near_the_chosen_file(serve, browser, tmp_path):
    page = browser.new_context(**PHONE).new_page()
    page.goto(serve())
    assert serious_accessibility_problems(page) == []
    expect(page.get_by_text("Ctrl+V")).to_be_hidden()
    expect(page.locator("#dropzone")).to_contain_text("choose files")

    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    page.set_input_files("#file", image(tmp_path, "phone.png", (40, 30)))
    row = page.locator("#selected li")
    expect(upscale_button(page)).to_be_enabled(timeout=ESTIMATE_MS)
    row.scroll_into_view_if_needed()
    # With the chosen file on screen, so is Upscale: no scrolling down to find it.
    button = upscale_button(page).bounding_box()
    assert 0 <= button["y"] and button["y"] + button["height"] <= PHONE["viewport"]["height"], button
    file_row = row.bounding_box()
    assert 0 <= file_row["y"] <= PHONE["viewport"]["height"], file_row
