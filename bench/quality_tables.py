"""The README's quality tables: Set5 and Set14 at 2x, 4x and 8x, bicubic and realistic degradation.

Runs `python -m esrgan evaluate` for each setting (x4 bicubic uses the given MATLAB LR files) and
prints one markdown table per setting (PSNR/SSIM Y and RGB, VGG distance, NIQE, time), with the
machine it ran on. CSVs and reports go to OUT.

    python bench/quality_tables.py --out bench/results/quality [--device cpu] [--datasets DIR]

DIR (default: $REMASTER_DATASETS, else ../shared/datasets beside the repository) holds Set5/, Set14/
and their *_LRx4/ folders.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("REMASTER_DATASETS", ROOT.parent / "shared" / "datasets"))
METHODS = "nearest,bicubic,lanczos,realesrgan,realesrgan-anime,realesr-animevideov3"


def machine() -> str:
    """The CPU model, its core count and the kernels torch runs on it, for the tables' caption."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, torch kernels {torch.backends.cpu.get_cpu_capability()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sets", default="Set5,Set14")
    parser.add_argument("--scales", default="4,2,8")
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    args = parser.parse_args()
    missing = [name for name in args.sets.split(",") if not (args.datasets / name).is_dir()]
    if missing:
        parser.error(f"no {', '.join(missing)} in {args.datasets} (pass --datasets or set REMASTER_DATASETS)")
    print(f"# machine: {machine()}, python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    for scale in (int(s) for s in args.scales.split(",")):
        for degradation in ("bicubic", "realistic"):
            for name in args.sets.split(","):
                tag = f"{name}_x{scale}_{degradation}"
                command = [sys.executable, "-m", "esrgan", "evaluate", str(args.datasets / name), "-s", str(scale),
                           "--degradation", degradation, "--methods", METHODS, "--device", args.device,
                           "--csv", str(args.out / f"{tag}.csv"), "--report", str(args.out / tag)]
                lr_dir = args.datasets / f"{name}_LRx{scale}"
                if degradation == "bicubic" and lr_dir.is_dir():
                    command += ["--lr-dir", str(lr_dir)]
                args.out.mkdir(parents=True, exist_ok=True)
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
                print(f"\n## {tag}\n")
                print(done.stdout.strip())
                if done.returncode:
                    print(done.stderr[-2000:])
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
