"""What a fine-tuning run shows when it ends: its loss and validation curves (`plot_log`) and the
command that upscales with the model it made (`upscale_command`)."""

from __future__ import annotations

import csv
import shlex
import sys
from pathlib import Path

import numpy as np

# What a person fills in in the printed command.
INPUT_PLACEHOLDER = "INPUT.png"
OUTPUT_PLACEHOLDER = "OUTPUT.png"


def upscale_command(model: Path) -> str:
    """The shell command that upscales with ``model``, runnable once `INPUT_PLACEHOLDER` and
    `OUTPUT_PLACEHOLDER` are filled in: this interpreter (relative to the working folder when
    inside it, as ``.venv/bin/python``), ``-m esrgan upscale --model`` the checkpoint's path."""
    python = Path(sys.executable)
    if python.is_absolute() and python.is_relative_to(Path.cwd()):
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), "-m", "esrgan", "upscale", "--model", str(model), INPUT_PLACEHOLDER,
                       "-o", OUTPUT_PLACEHOLDER])


def plot_log(log_path: Path, out: Path) -> None:
    """Loss and validation PSNR curves from the CSV log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with log_path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = [int(r["iter"]) for r in rows]
    for key in ("l_pix", "l_percep", "l_gan", "l_d"):
        values = [float(r[key]) if r.get(key) else np.nan for r in rows]
        if not all(np.isnan(values)):
            ax_loss.plot(steps, values, label=key, linewidth=0.8)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=8)
    val = [(int(r["iter"]), float(r["psnr_y"])) for r in rows if r.get("psnr_y")]
    if val:
        ax_psnr.plot([v[0] for v in val], [v[1] for v in val], marker="o")
    ax_psnr.set_xlabel("iteration")
    ax_psnr.set_ylabel("val PSNR-Y (dB)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
