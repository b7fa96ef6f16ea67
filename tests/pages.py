"""What the browser tests share: the page's names for things and the way a person chooses files.

The browser itself is the ``browser`` and ``page`` fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import expect

FAST = "realesr-animevideov3"
# A first estimate may convert a model's weights (minutes on a loaded 2-core machine): long timeouts,
# which only a broken page reaches.
ESTIMATE_MS = 400_000


def upscale_button(page):
    return page.get_by_role("button", name=re.compile("^Upscale"))


def choose(page, paths: str | Path | Sequence[str | Path], scale: str | None = "2", model: str = FAST) -> None:
    """Pick ``model`` and ``scale`` (None: leave it), then the files, as a person does; wait until
    Upscale can be pressed. Options first, so that the estimates Upscale waits for ask about them."""
    page.get_by_role("combobox", name="Model", exact=True).select_option(model)
    if scale is not None:
        page.get_by_role("radio", name=f"{scale}×").check()
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    page.set_input_files("#file", [str(path) for path in files])
    expect(upscale_button(page)).to_be_enabled(timeout=ESTIMATE_MS)
