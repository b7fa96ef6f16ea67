"""A real browser (Debian's Chromium driven by Playwright) against the app served by waitress."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT, crop_of

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "test-artifacts"


def test_upload_2x_compare_and_download(server, page, tmp_path):
    photo = tmp_path / "butterfly.png"
    crop_of("Set5/butterfly.png", (60, 60, 124, 108)).save(photo)  # 64x48

    page.goto(server)
    page.set_input_files("#file", str(photo))
    page.check('input[name="scale"][value="2"]')
    estimate = page.locator("#selected .estimate")
    estimate.filter(has_text="128×96").wait_for(timeout=300_000)  # a first start may convert weights
    assert "64×48 → 128×96" in estimate.inner_text()
    page.click("#submit")

    card = page.locator(".job.done")
    card.wait_for(timeout=180_000)
    after = card.locator("img.after")
    assert after.evaluate("img => img.complete && img.naturalWidth") == 128
    assert card.locator(".fact-output").inner_text() == "128 × 96"
    assert "Real-ESRGAN x4plus" in card.locator(".fact-how").inner_text()

    # The comparison answers the keyboard: focus the slider, move it, and the split follows.
    split = card.locator("input.split")
    split.focus()
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    stage_split = card.locator(".compare-stage").evaluate("el => el.style.getPropertyValue('--split')")
    assert stage_split == "45%"
    card.locator("input.zoom").fill("2")
    assert card.locator(".zoom-value").inner_text() == "2×"

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "result-page.png"), full_page=True)

    link = page.get_by_role("link", name=re.compile(r"^Download butterfly_x2\.png \(PNG, 128×96, "))
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "butterfly_x2.png"
    saved = Path(download.path())
    # The size the link says is the size of the file saved.
    said = re.search(r"(\d+) KB\)$", link.inner_text())
    assert said and abs(int(said[1]) - saved.stat().st_size / 1024) <= 0.5, (link.inner_text(), saved.stat().st_size)
    with Image.open(saved) as image:
        assert image.size == (128, 96)
