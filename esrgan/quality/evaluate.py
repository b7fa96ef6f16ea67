"""Evaluate upscalers against ground truth: nearest, bicubic, Lanczos and every registry model.

Every method gets the same low-resolution input for an image: read from ``--lr-dir`` (``NAME.*``
or ``NAMEx{scale}.*``), or made from the HR image by MATLAB bicubic downscaling or by the realistic
Real-ESRGAN degradation (seeded per image). Results are 8-bit, as a saved file would be, and scored
by `esrgan.quality.metrics.quality` and by NIQE (`esrgan.quality.niqe`, no reference needed: lower is better).
`evaluate_no_reference` scores real low-resolution photos that have no ground truth, by NIQE alone.
"""

from __future__ import annotations

import csv
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from esrgan.errors import RemasterError
from esrgan.io.imageio import DecodedImage, read_image, to_rgb, to_uint8
from esrgan.lazy_imports import lazy_import
from esrgan.pipeline import Upscaler
from esrgan.quality.degrade import DegradationConfig, degrade_image
from esrgan.quality.metrics import mod_crop, quality
from esrgan.quality.niqe import NIQEError, niqe
from esrgan.quality.resize import imresize

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "vgg", "niqe")
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's ImageNet weights, as its cache names them

Method = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class Evaluation:
    """Rows of per-image scores, the methods' mean rows, and what could not be measured."""

    rows: list[dict] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[dict]:
        out = []
        for method in dict.fromkeys(r["method"] for r in self.rows):
            mine = [r for r in self.rows if r["method"] == method]
            row = {"image": "MEAN", "method": method, "scale": mine[0]["scale"],
                   "degradation": mine[0]["degradation"]}
            for key in (*METRICS, "seconds"):
                values = [r[key] for r in mine if r.get(key) is not None]
                row[key] = float(np.mean(values)) if values else None
            out.append(row)
        return out


def _pil_method(resample: int) -> Method:
    def run(lr: np.ndarray, scale: int) -> np.ndarray:
        image = Image.fromarray(lr.squeeze(-1) if lr.shape[-1] == 1 else lr)
        out = np.asarray(image.resize((lr.shape[1] * scale, lr.shape[0] * scale), resample))
        return out.reshape(out.shape[0], out.shape[1], -1)

    return run


def _bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    return imresize(lr, size=(lr.shape[0] * scale, lr.shape[1] * scale))


def _model_method(upscaler: Upscaler, anime: bool, model: str | None) -> Method:
    def run(lr: np.ndarray, scale: int) -> np.ndarray:
        image = DecodedImage(lr.astype(np.float32) / 255.0)
        return to_uint8(upscaler.upscale(image, scale, anime, model).image.pixels)

    return run


def build_methods(names: Iterable[str], upscaler: Upscaler | None) -> dict[str, Method]:
    """Methods by name: nearest, bicubic (MATLAB), lanczos, realesrgan, realesrgan-anime, or a model."""
    classical = {"nearest": _pil_method(Image.NEAREST), "bicubic": _bicubic, "lanczos": _pil_method(Image.LANCZOS)}
    methods: dict[str, Method] = {}
    for name in names:
        if name in classical:
            methods[name] = classical[name]
        elif upscaler is None:
            raise RemasterError(f"method {name!r} needs the engine")
        elif name in ("realesrgan", "realesrgan-anime"):
            methods[name] = _model_method(upscaler, name.endswith("anime"), None)
        else:
            upscaler.store.entry(name)  # raises ModelNotFoundError with the available names
            methods[name] = _model_method(upscaler, False, name)
    return methods


def find_lr(lr_dir: Path, stem: str, scale: int) -> Path | None:
    for candidate in (f"{stem}x{scale}", stem):
        for suffix in IMAGE_SUFFIXES:
            if (lr_dir / f"{candidate}{suffix}").is_file():
                return lr_dir / f"{candidate}{suffix}"
    return None


def image_seed(seed: int, name: str) -> int:
    """A per-image seed that does not depend on the order images are read in."""
    return zlib.crc32(f"{seed}:{name}".encode())


def make_lr(hr: np.ndarray, scale: int, degradation: str, seed: int) -> np.ndarray:
    """(H, W, C) uint8 HR (mod-cropped) -> uint8 LR by MATLAB bicubic or the realistic pipeline."""
    if degradation == "bicubic":
        return imresize(hr, 1 / scale).reshape(hr.shape[0] // scale, hr.shape[1] // scale, -1)
    lr = degrade_image(to_rgb(hr).astype(np.float32) / 255.0, DegradationConfig(scale=scale), seed)
    lr = to_uint8(lr)
    return lr.mean(axis=2, keepdims=True).round().astype(np.uint8) if hr.shape[2] == 1 else lr


def niqe_score(sr: np.ndarray, scale: int) -> float | None:
    """NIQE of a uint8 result with ``scale`` border pixels cropped (as PSNR shaves), or None if too small."""
    try:
        return niqe(sr, crop_border=scale)
    except NIQEError as exc:
        log.info("NIQE not measured: %s", exc)
        return None


def _niqe_note(result: Evaluation) -> None:
    missing = sorted({r["image"] for r in result.rows if r["niqe"] is None})
    if missing:
        result.notes.append(f"NIQE not measured on {', '.join(missing)}: it needs 96x96 pixels with texture "
                            "after the border crop")


class VGGDistance:
    """L1 distance of VGG19 conv5_4 features (ImageNet-normalised), from local weights only."""

    def __init__(self, weights: Path) -> None:
        net = lazy_import("torchvision.models").vgg19()
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.features = net.features[:35].eval().requires_grad_(False)
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @staticmethod
    def find(explicit: Path | None = None) -> Path | None:
        candidates = [explicit] if explicit else []
        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE)
        return next((p for p in candidates if p is not None and p.is_file()), None)

    @torch.inference_mode()
    def __call__(self, sr: np.ndarray, hr: np.ndarray) -> float:
        def prepare(a: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(to_rgb(a)).permute(2, 0, 1)[None]
            return (t.float() / 255.0 - self.mean) / self.std

        return float((self.features(prepare(sr)) - self.features(prepare(hr))).abs().mean())


def evaluate(hr_dir: Path, scale: int, methods: dict[str, Method], lr_dir: Path | None = None,
             degradation: str = "bicubic", seed: int = 0, vgg: VGGDistance | None = None,
             keep_outputs: Callable[[str, str, np.ndarray], None] | None = None) -> Evaluation:
    """Score every method on every HR image of ``hr_dir``.

    Args:
        hr_dir: Ground-truth images.
        scale: 2, 4 or 8.
        methods: Name -> function (uint8 LR, scale) -> uint8 result.
        lr_dir: Read the LR inputs here instead of making them.
        degradation: ``"bicubic"`` (MATLAB) or ``"realistic"`` (Real-ESRGAN pipeline), when making LR.
        seed: Base seed of the realistic degradation.
        vgg: Feature distance, when its weights are present.
        keep_outputs: Called as (image name, method or "LR"/"HR", uint8 pixels) for reports.
    """
    result = Evaluation()
    paths = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in tqdm(paths, desc=f"x{scale} {degradation if lr_dir is None else 'given LR'}", unit="image"):
        try:
            hr = to_uint8(read_image(path, max_pixels=None).color)  # alpha is not scored
            if lr_dir is not None:
                lr_path = find_lr(lr_dir, path.stem, scale)
                if lr_path is None:
                    raise RemasterError(f"no LR image for {path.name} in {lr_dir}")
                lr = to_uint8(read_image(lr_path).color)
                if lr.shape[2] != hr.shape[2]:
                    lr = lr[..., :1] if hr.shape[2] == 1 else np.repeat(lr, 3, 2)
                hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
            else:
                hr = mod_crop(hr, scale)
                lr = make_lr(hr, scale, degradation, image_seed(seed, path.name))
            if keep_outputs:
                keep_outputs(path.name, "LR", lr)
                keep_outputs(path.name, "HR", hr)
            shown = "given" if lr_dir is not None else degradation
            _run_methods(result, path.name, lr, scale, methods, keep_outputs, lambda sr, hr=hr, shown=shown: {
                "degradation": shown, **quality(sr, hr, scale), "vgg": vgg(sr, hr) if vgg else None})
        except (RemasterError, OSError, ValueError) as exc:
            log.warning("skipping %s: %s", path.name, exc)
            result.failures[path.name] = str(exc)
    if vgg is None:
        result.notes.append(f"VGG distance not measured: no local {VGG19_FILE} (it cannot be downloaded here)")
    _niqe_note(result)
    return result


def evaluate_no_reference(lr_dir: Path, scale: int, methods: dict[str, Method],
                          keep_outputs: Callable[[str, str, np.ndarray], None] | None = None) -> Evaluation:
    """Upscale every image of ``lr_dir`` (photos without ground truth) by every method; score NIQE.

    Rows carry ``niqe`` and ``seconds``; the full-reference metrics are None. ``keep_outputs`` gets
    (image name, method or "LR", uint8 pixels), as in `evaluate`.
    """
    result = Evaluation()
    paths = sorted(p for p in lr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in tqdm(paths, desc=f"x{scale} no reference", unit="image"):
        try:
            lr = to_uint8(read_image(path).color)
            if keep_outputs:
                keep_outputs(path.name, "LR", lr)
            _run_methods(result, path.name, lr, scale, methods, keep_outputs,
                         lambda sr: {"degradation": "none (no reference)", **dict.fromkeys(METRICS)})
        except (RemasterError, OSError, ValueError) as exc:
            log.warning("skipping %s: %s", path.name, exc)
            result.failures[path.name] = str(exc)
    result.notes.append("no ground truth: NIQE only (lower is better)")
    _niqe_note(result)
    return result


def write_csv(evaluation: Evaluation, path: Path) -> None:
    columns = ["image", "method", "scale", "degradation", *METRICS, "seconds"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in [*evaluation.rows, *evaluation.summary()]:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def _run_methods(result: Evaluation, image: str, lr: np.ndarray, scale: int, methods: dict[str, Method],
                 keep_outputs: Callable[[str, str, np.ndarray], None] | None,
                 scores: Callable[[np.ndarray], dict]) -> None:
    """Run every method on one LR image; one row each with ``scores(sr)``, NIQE and the time."""
    for name, method in methods.items():
        started = time.perf_counter()
        sr = method(lr, scale)
        seconds = time.perf_counter() - started
        result.rows.append({"image": image, "method": name, "scale": scale, **scores(sr),
                            "niqe": niqe_score(sr, scale), "seconds": seconds})
        if keep_outputs:
            keep_outputs(image, name, sr)
