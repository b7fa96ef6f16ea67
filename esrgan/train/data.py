"""Training data: a seeded split of an HR folder, random augmented crops, LR made on the fly."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from esrgan.errors import RemasterError, TrainingDataError
from esrgan.io.imageio import read_image
from esrgan.quality.evaluate import IMAGE_SUFFIXES, find_lr

log = logging.getLogger(__name__)


@dataclass
class Split:
    train: list[Path]
    val: list[Path]
    test: list[Path]
    skipped: dict[str, str]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({k: [p.name for p in getattr(self, k)] for k in ("train", "val", "test")}
                                   | {"skipped": self.skipped}, indent=2))


def split_folder(hr_dir: Path, fractions: tuple[float, float, float], seed: int) -> Split:
    """Shuffle the readable images of ``hr_dir`` with ``seed`` and cut them train/val/test.

    Unreadable images are skipped and listed. Every split gets at least one image when there are
    three or more; with fewer, validation reuses the training images.
    """
    readable, skipped = [], {}
    for path in sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            read_image(path, max_pixels=None)
            readable.append(path)
        except RemasterError as exc:
            skipped[path.name] = str(exc)
            log.warning("skipping %s: %s", path.name, exc)
    if not readable:
        raise TrainingDataError(f"no readable images in {hr_dir}")
    order = np.random.default_rng(seed).permutation(len(readable))
    shuffled = [readable[i] for i in order]
    n = len(shuffled)
    if n < 3:
        return Split(shuffled, shuffled, [], skipped)
    n_val = max(1, round(n * fractions[1]))
    n_test = max(1, round(n * fractions[2]))
    n_train = max(1, n - n_val - n_test)
    return Split(shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :], skipped)


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) float32 RGB: gray is replicated, alpha dropped."""
    return read_image(path, max_pixels=None).rgb()


class PatchSampler:
    """Random HR crops (and their LR, from a paired folder) with flips and 90-degree turns.

    Args:
        paths: HR images (kept in memory: a fine-tuning set is small).
        hr_patch: Side of an HR crop.
        scale: Model scale (a paired LR crop is ``hr_patch // scale``).
        generator: Source of every random draw.
        lr_dir: Paired LR folder (``NAME.*``/``NAMEx{scale}.*``); None to degrade on the fly.
    """

    def __init__(self, paths: list[Path], hr_patch: int, scale: int, generator: torch.Generator,
                 lr_dir: Path | None = None) -> None:
        self.hr_patch, self.scale, self.rng = hr_patch, scale, generator
        self.images = []
        self.too_small: list[str] = []
        shortest_sides = []
        for path in paths:
            hr = load_rgb(path)
            lr = None
            if lr_dir is not None:
                lr_path = find_lr(lr_dir, path.stem, scale)
                if lr_path is None:
                    raise TrainingDataError(f"no LR image for {path.name} in {lr_dir}")
                lr = load_rgb(lr_path)
                hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
            shortest_sides.append(min(hr.shape[:2]))
            if min(hr.shape[:2]) < hr_patch:
                log.warning("not training on %s: smaller than the %dpx crop", path.name, hr_patch)
                self.too_small.append(path.name)
                continue
            self.images.append((torch.from_numpy(hr).permute(2, 0, 1), None if lr is None else
                                torch.from_numpy(lr).permute(2, 0, 1)))
        if not self.images:
            raise TrainingDataError(self._too_small_message(max(shortest_sides, default=0)))

    def _too_small_message(self, shortest: int) -> str:
        """Why no image can be trained on, and the largest ``--patch`` (an LR side) that would fit."""
        largest = shortest // self.scale
        asked = f"no training image is at least {self.hr_patch}px on each side (--patch {self.hr_patch // self.scale}"
        asked += f" at {self.scale}x)" if self.scale != 1 else ")"
        if largest < 1:
            return f"{asked}: the largest is {shortest}px on its shorter side; use larger images"
        return f"{asked}: the largest patch that fits is --patch {largest}"

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (), generator=self.rng))

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(HR batch, LR batch or None), (N, 3, h, w) float in [0, 1]."""
        hrs, lrs = [], []
        s, p = self.scale, self.hr_patch
        for _ in range(batch):
            hr, lr = self.images[self._randint(len(self.images))]
            y = self._randint((hr.shape[1] - p) // s + 1) * s
            x = self._randint((hr.shape[2] - p) // s + 1) * s
            crops = [hr[:, y : y + p, x : x + p]]
            if lr is not None:
                crops.append(lr[:, y // s : (y + p) // s, x // s : (x + p) // s])
            flip, turns = self._randint(2), self._randint(4)
            crops = [torch.rot90(c.flip(-1) if flip else c, turns, dims=(1, 2)) for c in crops]
            hrs.append(crops[0])
            if lr is not None:
                lrs.append(crops[1])
        return torch.stack(hrs).contiguous(), torch.stack(lrs).contiguous() if lrs else None
