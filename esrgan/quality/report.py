"""An evaluation report: a markdown table of the methods' means, crop grids and bar charts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from esrgan.quality.evaluate import Evaluation  # noqa: E402

CROP = 96  # side of the crop shown per image, in HR pixels


class Crops:
    """Collects a crop of each image's LR, HR and every method's result for the grid."""

    def __init__(self) -> None:
        self.images: dict[str, dict[str, np.ndarray]] = defaultdict(dict)

    def __call__(self, image: str, method: str, pixels: np.ndarray) -> None:
        self.images[image][method] = pixels


def _window(hr: np.ndarray) -> tuple[int, int]:
    """Top-left of the most detailed CROP x CROP window (largest gradient energy), on a coarse grid."""
    gray = hr.astype(np.float32).mean(axis=2)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1]
    best, where = -1.0, (0, 0)
    step = max(8, CROP // 4)
    for y in range(0, max(1, energy.shape[0] - CROP), step):
        for x in range(0, max(1, energy.shape[1] - CROP), step):
            total = float(energy[y : y + CROP, x : x + CROP].sum())
            if total > best:
                best, where = total, (y, x)
    return where


def crop_grid(crops: Crops, scale: int, path: Path) -> None:
    names = list(crops.images)
    if not names:
        return
    methods = [m for m in crops.images[names[0]] if m not in ("LR", "HR")]
    has_hr = any("HR" in images for images in crops.images.values())
    columns = ["LR", *methods, *(["HR"] if has_hr else [])]
    fig, axes = plt.subplots(len(names), len(columns), figsize=(1.8 * len(columns), 1.9 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        # Without ground truth (no-reference runs) the window is chosen on the first method's result.
        y, x = _window(crops.images[name]["HR"] if has_hr else crops.images[name][methods[0]])
        for col, method in enumerate(columns):
            pixels = crops.images[name].get(method)
            ax = axes[row][col]
            ax.axis("off")
            if pixels is None:
                continue
            if method == "LR":
                side = max(1, CROP // scale)
                patch = pixels[y // scale : y // scale + side, x // scale : x // scale + side]
                patch = np.asarray(Image.fromarray(patch.squeeze()).resize((CROP, CROP), Image.NEAREST))
            else:
                patch = pixels[y : y + CROP, x : x + CROP]
            ax.imshow(patch.squeeze(), cmap="gray" if patch.squeeze().ndim == 2 else None, vmin=0, vmax=255)
            if row == 0:
                ax.set_title(method, fontsize=8)
        axes[row][0].text(-8, CROP // 2, name, fontsize=7, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bar_charts(evaluation: Evaluation, title: str, folder: Path) -> list[Path]:
    summary = evaluation.summary()
    paths = []
    for metric in ("psnr_y", "ssim_y", "vgg", "niqe"):
        values = [(r["method"], r[metric]) for r in summary if r[metric] is not None]
        if not values:
            continue
        fig, ax = plt.subplots(figsize=(1.2 * len(values) + 2, 3))
        ax.bar([m for m, _ in values], [v for _, v in values], color="#3d7be0")
        ax.set_ylabel(metric)
        ax.set_title(f"{title}: mean {metric}")
        low = min(v for _, v in values)
        if metric not in ("vgg", "niqe"):  # distances start at zero
            ax.set_ylim(low * 0.95, max(v for _, v in values) * 1.01)
        for i, (_, v) in enumerate(values):
            ax.text(i, v, f"{v:.3f}" if metric.startswith("ssim") else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
        fig.tight_layout()
        path = folder / f"{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


TABLE_COLUMNS = (  # key, header, format
    ("psnr_y", "PSNR-Y (dB)", ".2f"), ("ssim_y", "SSIM-Y", ".4f"), ("psnr_rgb", "PSNR-RGB (dB)", ".2f"),
    ("ssim_rgb", "SSIM-RGB", ".4f"), ("vgg", "VGG dist.", ".3f"), ("niqe", "NIQE", ".3f"),
    ("seconds", "s / image", ".2f"),
)
NO_REFERENCE_COLUMNS = ("niqe", "seconds")


def markdown_table(evaluation: Evaluation) -> str:
    """The methods' means; a no-reference evaluation (no PSNR anywhere) shows NIQE and time only."""
    summary = evaluation.summary()
    full = any(r["psnr_y"] is not None for r in summary)
    columns = [c for c in TABLE_COLUMNS if full or c[0] in NO_REFERENCE_COLUMNS]
    lines = ["| method | " + " | ".join(header for _, header, _ in columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    for r in summary:
        cells = ["n/a" if r[key] is None else format(r[key], fmt) for key, _, fmt in columns]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(evaluation: Evaluation, crops: Crops, scale: int, title: str, folder: Path) -> Path:
    """Write report.md, crops.png and a bar chart per metric into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    crop_grid(crops, scale, folder / "crops.png")
    charts = bar_charts(evaluation, title, folder)
    text = [f"# {title}", "", markdown_table(evaluation), ""]
    text += [f"- {note}" for note in evaluation.notes]
    text += [f"- skipped {name}: {why}" for name, why in evaluation.failures.items()]
    text += ["", "![crops](crops.png)", ""] + [f"![{p.stem}]({p.name})" for p in charts]
    path = folder / "report.md"
    path.write_text("\n".join(text) + "\n")
    return path
