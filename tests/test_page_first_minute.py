"""The page in its first minute, one click at a time, as a person meets it in a real browser
(Debian's Chromium driven by Playwright against the app served by waitress): "Other size" estimates
as a width is typed and sends on one click; a bad file never holds back the good ones; a reload
mid-batch keeps the cards' order and the batch line; the options say what they do and what they
need; the compare labels follow the split; the phone's sticky Upscale bar covers no control. Each
test keeps a screenshot under test-artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT, crop_of
from tests.test_page_before_sending import DESKTOP, PHONE, serious_accessibility_problems

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "test-artifacts"
FAST = "realesr-animevideov3"
# A first estimate or job may convert a model's weights and measure this CPU (minutes on a loaded
# 2-core machine): long timeouts, which only a broken page reaches.
SLOW_MS = 400_000
# Every word a person can read or hear on the page, collected as it changes (a MutationObserver).
WATCH_WORDS_JS = """() => { window.said = new Set();
    const note = () => window.said.add(document.querySelector('main').innerText);
    new MutationObserver(note).observe(document.querySelector('main'),
        { subtree: true, childList: true, characterData: true, attributes: true }); }"""


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"first-minute-{name}.png"), full_page=True)


def image(tmp_path, name: str, size: tuple[int, int], at: int = 40) -> str:
    path = tmp_path / name
    crop_of("Set5/bird.png", (at, at, at + size[0], at + size[1])).save(path)
    return str(path)


def slow_server(serve, engine_hooks, seconds_per_step: float = 0.4) -> str:
    """A server whose jobs stay running a while on any CPU (each network step waits this long)."""
    engine_hooks(delay=seconds_per_step)
    return serve()


def upscale_button(page):
    return page.get_by_role("button", name="Upscale")


def test_other_size_estimates_a_typed_width_and_one_click_sends_it(serve, browser, tmp_path):
    server = serve()
    page = browser.new_context(**DESKTOP).new_page()
    posted = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/api/jobs") and posted.append(r.url))
    page.goto(server)
    page.evaluate(WATCH_WORDS_JS)
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    page.set_input_files("#file", image(tmp_path, "bird.png", (40, 30)))
    row = page.locator("#selected li")
    expect(upscale_button(page)).to_be_enabled(timeout=SLOW_MS)

    page.get_by_role("radio", name="Other size").check()
    size = page.get_by_role("spinbutton", name="Size")
    expect(size).to_have_value("2.5")
    page.get_by_role("combobox", name="Size by").select_option("width")
    expect(size).to_have_value("")  # the factor is no width
    size.click()
    page.keyboard.type("100", delay=80)
    # Estimated as typed: no Enter, the field keeps the focus.
    expect(row).to_contain_text("40×30 → 100×75", timeout=SLOW_MS)
    assert page.evaluate("() => document.activeElement.id") == "size-value"
    # A width no server takes is said in words, before asking it; the server's own refusal too.
    page.keyboard.press("End")
    page.keyboard.type(".5")
    expect(row).to_contain_text("type the result's width as a whole number of pixels")
    refusal = page.request.get(f"{server}/api/estimate?width=40&height=30&target_width=2.5").json()["error"]
    assert refusal == "the result's width must be a whole number of pixels, not '2.5'"

    # Typed, then one click at once (a person's click: Playwright waits for nothing): it is sent with
    # the width typed, once its estimate is in.
    size.fill("")
    page.keyboard.type("120")
    upscale_button(page).click(force=True)
    expect(page.get_by_role("progressbar", name="bird.png")).to_be_visible(timeout=SLOW_MS)
    expect(page.get_by_role("link", name=re.compile(r"^Download bird_"))).to_be_visible(timeout=SLOW_MS)
    expect(page.locator(".job.done .fact-output")).to_have_text("120 × 90")  # the width typed last
    assert len(posted) == 1, posted
    said = "\n".join(page.evaluate("() => [...window.said]"))
    assert "target_" not in said and "2.5 pixels" not in said and "'2.5'" not in said
    shot(page, "other-size")


def test_files_that_cannot_go_are_named_and_the_others_go_on_one_click(serve, browser, tmp_path):
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(serve())
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture\n")
    good = [image(tmp_path, "one.png", (23, 17)), image(tmp_path, "two.png", (31, 9), at=60)]
    page.set_input_files("#file", [str(tmp_path / "empty.png"), good[0], str(tmp_path / "notes.png"), good[1]])
    message = page.locator("#form-message")
    expect(message).to_have_text("empty.png and notes.png cannot be upscaled as chosen (see the fix next to each); "
                                 "Upscale sends the other 2 files.", timeout=SLOW_MS)
    upscale_button(page).click()
    expect(page.get_by_role("progressbar", name="one.png")).to_be_visible()
    expect(page.get_by_role("progressbar", name="two.png")).to_be_visible()
    # The two that could not go stay, with their reasons and a way out.
    rows = page.locator("#selected li")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="empty.png")).to_contain_text("the file is empty")
    expect(page.get_by_role("button", name="Remove notes.png")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile(r"^Download (one|two)_"))).to_have_count(2, timeout=SLOW_MS)
    shot(page, "bad-files")


def test_a_reload_mid_batch_keeps_the_cards_order_and_the_batch_line(serve, engine_hooks, browser, tmp_path):
    server = slow_server(serve, engine_hooks)
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(server)
    page.get_by_role("radio", name="4×").check()
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    names = ["c-first.png", "a-second.png", "b-third.png"]  # neither alphabetical nor by size
    page.set_input_files("#file", [image(tmp_path, n, (20 + 3 * i, 16), at=40 + 9 * i) for i, n in enumerate(names)])
    expect(upscale_button(page)).to_be_enabled(timeout=SLOW_MS)
    upscale_button(page).click()
    summary = page.locator("#batch-summary")
    expect(summary).to_contain_text("Batch of 3: 0 done")
    cards = page.locator("#jobs .job-name")
    expect(cards).to_have_text(names)
    page.wait_for_function("() => Object.keys(JSON.parse(localStorage.getItem('remaster.jobs') || '{}')).length === 3")
    page.reload()
    expect(cards).to_have_text(names)
    expect(summary).to_be_visible()
    expect(summary).to_have_text(re.compile(r"^Batch of 3: [0-2] done, [1-3] to go"))
    shot(page, "reload-mid-batch")
    expect(summary).to_have_text("Batch of 3: 3 done.", timeout=SLOW_MS)
    expect(cards).to_have_text(names)


def test_the_options_say_what_they_do_and_what_they_need(serve, browser, tmp_path):
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(serve())
    assert serious_accessibility_problems(page) == []
    # Faces: shown, off, with how to add a checkpoint; the models not installed say how to add them.
    faces = page.get_by_role("checkbox", name="Restore faces")
    expect(faces).to_be_visible()
    expect(faces).to_be_disabled()
    expect(faces).to_have_accessible_description(re.compile(r"put a GFPGAN v1\.3 or v1\.4 checkpoint .+ in weights/"))
    model = page.get_by_role("combobox", name="Model", exact=True)
    for title, file in (("Real-ESRGAN x2plus", "RealESRGAN_x2plus.pth"), ("Real-ESRGAN x8", "RealESRGAN_x8.pth")):
        said = rf"{re.escape(title)}.* is not installed: put upstream's checkpoint {re.escape(file)} in weights/"
        expect(model).to_have_accessible_description(re.compile(said))
    # A preset says the level it sets.
    noise = page.get_by_role("combobox", name="Noise reduction", exact=True)
    preset = page.get_by_role("button", name=re.compile(r"^Anime 2×"))
    preset.click()
    level = noise.locator("option:checked").inner_text().lower()
    assert level in preset.inner_text().lower(), (level, preset.inner_text())
    # Where two photo levels run the same models, the list and its description say so.
    page.get_by_role("checkbox", name="Anime / illustration").uncheck()
    expect(noise.locator("option[value=high]")).to_have_text("High (same as None here)")
    noise.select_option("high")
    expect(noise).to_have_accessible_description(re.compile(
        r'^At 2× for photos, "High" makes the same result as "None": both run Real-ESRGAN x4plus, .+'
        r"Not installed here: Real-ESRGAN x2plus"))
    noise.select_option("none")

    # Best quality is said in "Made with", and is not ticked again silently on the next visit.
    model.select_option(FAST)
    page.get_by_role("checkbox", name=re.compile("^Best quality")).check()
    page.set_input_files("#file", image(tmp_path, "tiny.png", (19, 13)))
    expect(upscale_button(page)).to_be_enabled(timeout=SLOW_MS)
    upscale_button(page).click()
    made = page.locator(".job.done .fact-how")
    expect(made).to_contain_text("Best quality (the 8 flips and turns averaged)", timeout=SLOW_MS)
    shot(page, "options")
    page.reload()
    expect(page.get_by_role("checkbox", name=re.compile("^Best quality"))).not_to_be_checked()
    expect(made).to_contain_text("Best quality", timeout=SLOW_MS)  # the job itself still says it


def test_compare_labels_follow_the_split_and_the_wheel_scrolls_after_a_drag(serve, browser, tmp_path):
    page = browser.new_context(**DESKTOP).new_page()
    page.goto(serve())
    page.get_by_role("radio", name="2×").check()
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    page.set_input_files("#file", image(tmp_path, "wide.png", (97, 41)))
    expect(upscale_button(page)).to_be_enabled(timeout=SLOW_MS)
    upscale_button(page).click()
    expect(page.get_by_role("link", name=re.compile(r"^Download wide_x2"))).to_be_visible(timeout=SLOW_MS)
    card = page.locator(".job.done")
    compare = card.locator(".compare")
    compare.scroll_into_view_if_needed()

    def labels_beside_the_line():
        view, line = compare.bounding_box(), card.locator(".compare-line").bounding_box()
        middle = line["x"] + line["width"] / 2
        for side in ("before", "after"):
            label = card.locator(f".label-{side}")
            if label.evaluate("el => getComputedStyle(el).visibility") == "hidden":
                continue
            box = label.bounding_box()
            assert view["x"] <= box["x"] and box["x"] + box["width"] <= view["x"] + view["width"], (side, box, view)
            if side == "before":
                assert box["x"] + box["width"] <= middle, (side, box, middle)
            else:
                assert box["x"] >= middle, (side, box, middle)

    labels_beside_the_line()
    card.get_by_role("slider", name="Zoom").fill("4")
    labels_beside_the_line()
    for _ in range(60):  # pan right until the split leaves the view: only "After" is shown
        compare.press("ArrowRight")
        if card.locator(".compare-line").bounding_box()["x"] < compare.bounding_box()["x"]:
            break
    labels_beside_the_line()
    expect(card.locator(".label-before")).to_have_css("visibility", "hidden")
    expect(card.locator(".label-after")).to_have_css("visibility", "visible")
    shot(page, "compare-zoomed")
    card.get_by_role("button", name="Fit").click()
    labels_beside_the_line()

    # A drag of the split, then the plain wheel over the image: the page scrolls, the zoom stays.
    box = compare.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.6, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, y, steps=8)
    page.mouse.up()
    labels_beside_the_line()
    scrolled = page.evaluate("() => window.scrollY")
    assert scrolled > 0
    page.mouse.wheel(0, -120)
    page.wait_for_function("(before) => window.scrollY < before", arg=scrolled)
    expect(card.locator(".zoom-value")).to_have_text("1×")
    # A click without a drag engages the viewer: then the plain wheel zooms.
    box = compare.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -120)
    expect(card.locator(".zoom-value")).not_to_have_text("1×")


def test_on_a_phone_the_sticky_upscale_bar_covers_no_control(serve, browser, tmp_path):
    page = browser.new_context(**PHONE).new_page()
    page.goto(serve())
    page.get_by_role("combobox", name="Model", exact=True).select_option(FAST)
    page.set_input_files("#file", image(tmp_path, "phone.png", (40, 30)))
    expect(upscale_button(page)).to_be_enabled(timeout=SLOW_MS)
    page.get_by_role("radio", name="Other size").check()
    page.evaluate("() => window.scrollTo(0, 0)")
    covered = page.evaluate("""async () => {
        const bar = document.querySelector('.actions');
        const controls = [...document.querySelectorAll('#upscale-form :is(input, select, button)')]
            .filter((c) => c.getClientRects().length && !bar.contains(c) && c.type !== 'file');
        const found = [];
        const frames = () => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
        for (const control of controls) {
            control.focus();
            await frames();
            // A control still covered a second later is covered (not caught mid-scroll or mid-layout).
            let box, hit, shown;
            for (let look = 0; look < 10; look += 1) {
                box = control.getBoundingClientRect();
                hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
                const label = control.closest('label');
                shown = hit === control || control.contains(hit) || (label && label.contains(hit));
                if (shown) break;
                await new Promise((ok) => setTimeout(ok, 100));
                await frames();
            }
            if (!shown) {
                found.push(`${control.id || control.name || control.textContent} under ${hit && `${hit.tagName}#${hit.id}.${hit.className}`} at ${Math.round(box.y)} of ${innerHeight}, scrolled ${Math.round(scrollY)}`);
            }
        }
        return [controls.length, found];
    }""")
    count, under = covered
    assert count >= 15 and under == [], covered
    # A control a person has scrolled to just above the bar (stuck to the screen's bottom): a message
    # arriving in the bar makes it taller, and the control in focus comes back above it.
    place = page.evaluate("""async () => {
        const frames = () => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
        window.scrollTo(0, 0);
        await frames();
        const bar = document.querySelector('.actions');
        const control = [...document.querySelectorAll('#upscale-form input[type=radio]')]
            .find((c) => c.getBoundingClientRect().bottom > bar.getBoundingClientRect().top);
        control.focus({ preventScroll: true });
        window.scrollBy(0, control.getBoundingClientRect().bottom - bar.getBoundingClientRect().top + 4);
        await frames();
        document.getElementById('form-message').textContent =
            'A message of several lines on a phone, as a problem with the chosen size can be. '.repeat(3);
        await frames();
        await frames();
        return [control.getBoundingClientRect().bottom, bar.getBoundingClientRect().top];
    }""")
    assert place[0] <= place[1], place
    shot(page, "phone")
