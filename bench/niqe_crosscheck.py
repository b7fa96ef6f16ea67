"""Cross-check `esrgan.quality.niqe` against basicsr's NIQE, run from basicsr's source distribution.

basicsr is not a dependency: its `basicsr/metrics/niqe.py` is loaded from an extracted sdist with
only the few modules it imports (its MATLAB imresize, its BT.601 conversion, a registry stand-in),
so it is an independent implementation of the same MATLAB conventions. It needs scipy and
opencv-python-headless (both installed here: scikit-image depends on scipy).

    pip download --no-deps --no-build-isolation --no-binary :all: basicsr==1.4.2 -d /tmp/basicsr_sdist
    tar xzf /tmp/basicsr_sdist/basicsr-1.4.2.tar.gz -C /tmp/basicsr_sdist
    python bench/niqe_crosscheck.py /tmp/basicsr_sdist/basicsr-1.4.2 IMAGE... [--crop-border 4]

Prints ours, basicsr's and the difference per image (colour images as RGB, and basicsr gets BGR; gray as gray).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.quality.niqe import niqe  # noqa: E402


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_basicsr_niqe(sdist: Path):
    """basicsr's calculate_niqe, with its package imports satisfied from the sdist's own files."""
    for package in ("basicsr", "basicsr.metrics"):
        sys.modules[package] = types.ModuleType(package)
    utils = types.ModuleType("basicsr.utils")
    sys.modules["basicsr.utils"] = utils
    color = _load("basicsr.utils.color_util", sdist / "basicsr/utils/color_util.py")
    utils.bgr2ycbcr = color.bgr2ycbcr
    _load("basicsr.utils.matlab_functions", sdist / "basicsr/utils/matlab_functions.py")
    registry = types.ModuleType("basicsr.utils.registry")
    registry.METRIC_REGISTRY = types.SimpleNamespace(register=lambda: (lambda f: f))
    sys.modules["basicsr.utils.registry"] = registry
    _load("basicsr.metrics.metric_util", sdist / "basicsr/metrics/metric_util.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy.ndimage.filters, in basicsr's file
        module = _load("basicsr.metrics.niqe", sdist / "basicsr/metrics/niqe.py")
    return module.calculate_niqe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="the extracted basicsr source distribution")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--crop-border", type=int, default=0)
    args = parser.parse_args()
    basicsr_niqe = load_basicsr_niqe(args.sdist)
    print("| image | size | ours | basicsr | difference | ours s | basicsr s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path in args.images:
        image = Image.open(path)
        gray = image.mode == "L"  # a gray image is its own Y, for both
        pixels = np.asarray(image if gray else image.convert("RGB"))
        started = time.perf_counter()
        mine = niqe(pixels, args.crop_border)
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            theirs = basicsr_niqe(pixels if gray else pixels[..., ::-1], args.crop_border,
                                  input_order="HW" if gray else "HWC", convert_to="y")
        theirs_s = time.perf_counter() - started
        print(f"| {path.name} | {pixels.shape[1]}x{pixels.shape[0]} | {mine:.6f} | {theirs:.6f} | {mine - theirs:+.2e} "
              f"| {ours_s:.2f} | {theirs_s:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
