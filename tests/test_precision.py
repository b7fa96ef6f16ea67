"""Precision per model, not per machine: on a CPU with native bf16 each model is measured once,
its bf16 output against its fp32 output on a real crop, and runs in bf16 only if it keeps 45 dB.

Two tiny networks stand in for the models: one as initialised, and one whose first layer adds a
large constant that the next layer takes away again. In fp32 that costs nothing; in bf16 (8 bits
of mantissa) the large activations lose the small ones, as a real model's outliers can.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

from esrgan.archs import SRVGGNetCompact
from esrgan.io.imageio import DecodedImage, read_image
from esrgan.listing import models_listing
from esrgan.models.keys import ModelKey
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.runtime import choose as runtime
from esrgan.runtime.precision import MIN_MODEL_PSNR, PRECISION_FILE, PrecisionStore
from esrgan.settings import Settings
from tests.conftest import ROOT, dataset_image

NATIVE_BF16 = runtime.native_bf16()[0]
AVX2_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
OFFSET = 1000.0  # added by the first layer, taken away by the next: harmless in fp32, ruinous in bf16


def tiny_compact(fragile: bool) -> torch.nn.Module:
    torch.manual_seed(7)
    network = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4).eval()
    if fragile:
        first, second = network.body[0], network.body[2]
        with torch.no_grad():
            first.bias += OFFSET  # every activation positive: the PReLU between passes it unchanged
            second.bias -= OFFSET * second.weight.sum(dim=(1, 2, 3))
    return network


def tiny_weights(folder) -> None:
    """A weights folder with both tiny models and a calibration that chose bf16 for this machine."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, fragile in (("tiny-faithful", False), ("tiny-fragile", True)):
        torch.save({"params_ema": tiny_compact(fragile).state_dict()}, folder / f"{name}.pth")
    chosen = runtime.Calibration(runtime.machine_key(), 1.0, 0.5, 50.0, "bf16", 3, 0.0)
    (folder / "converted").mkdir(exist_ok=True)
    (folder / "converted" / "calibration.json").write_text(json.dumps(asdict(chosen)))


@pytest.fixture
def photo() -> DecodedImage:
    return DecodedImage(np.ascontiguousarray(read_image(dataset_image("astronaut_lr4.png")).pixels[30:53, 40:67]))


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16: nothing is measured (next test)")
def test_each_model_runs_in_bf16_only_if_it_stays_faithful_in_it(tmp_path, photo):
    tiny_weights(tmp_path / "weights")
    store = ModelStore(tmp_path / "weights", ncnn_dir=tmp_path / "no-shipped-weights")
    upscaler = Upscaler(store, Settings(device="cpu", weights_folder=tmp_path / "weights"))
    assert upscaler.runtime.precision == "bf16"  # the machine's verdict
    figures_file = tmp_path / "weights" / "converted" / PRECISION_FILE
    faithful = upscaler.upscale(photo, 4, model="tiny-faithful")
    assert faithful.provenance.precision == "bf16"
    assert set(json.loads(figures_file.read_text())) == {"tiny-faithful"}  # that one model only
    fragile = upscaler.upscale(photo, 4, model="tiny-fragile", float_result=True)
    assert fragile.provenance.precision == "fp32"
    figures = PrecisionStore(figures_file)
    assert figures.get(ModelKey("tiny-faithful")).psnr >= MIN_MODEL_PSNR > figures.get(ModelKey("tiny-fragile")).psnr
    # Its fp32 result is the network's own: what it computes in fp32, directly.
    with torch.inference_mode():
        x = torch.from_numpy(photo.pixels).permute(2, 0, 1)[None]
        direct = tiny_compact(True)(x)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    np.testing.assert_allclose(fragile.image.pixels, direct, atol=2e-4)  # the offset costs fp32 a little
    # Measured once: a second run and a new process read the figures.
    before = figures_file.read_text()
    again = Upscaler(ModelStore(tmp_path / "weights", ncnn_dir=tmp_path / "none"),
                     Settings(device="cpu", weights_folder=tmp_path / "weights"))
    assert again.upscale(photo, 4, model="tiny-fragile").provenance.precision == "fp32"
    assert figures_file.read_text() == before
    # The listing (models --json, GET /api/models) carries the figures; models --measure prints them.
    rows = {m["name"]: m for m in models_listing(again)["models"]}
    assert rows["tiny-fragile"]["precision"] == "fp32" and rows["tiny-fragile"]["bf16_psnr"] < MIN_MODEL_PSNR
    assert rows["tiny-faithful"]["precision"] == "bf16" and rows["tiny-faithful"]["bf16_speedup"] > 0
    assert rows["realesrgan-x4plus"]["bf16_psnr"] is None  # never measured here
    measured = subprocess.run([sys.executable, "-m", "esrgan", "models", "--measure", "tiny-fragile"], cwd=ROOT,
                              env={**os.environ, "REMASTER_WEIGHTS_FOLDER": str(tmp_path / "weights")},
                              capture_output=True, text=True, timeout=300)
    assert measured.returncode == 0, measured.stderr
    assert "tiny-fragile: " in measured.stdout and "dB to fp32" in measured.stdout and "-> fp32" in measured.stdout
    assert "fp32 (bf16 " in measured.stdout  # the listing line
    # The user's choice stands: forced bf16 runs the fragile model in bf16, measuring nothing.
    forced = Upscaler(store, Settings(device="cpu", precision="bf16", weights_folder=tmp_path / "weights"))
    assert forced.upscale(photo, 4, model="tiny-fragile").provenance.precision == "bf16"


def test_no_bf16_is_measured_under_avx2_caps(tmp_path):
    """Capped to AVX2 kernels, bf16 would be emulated: nothing is measured, every model runs fp32."""
    tiny_weights(tmp_path / "weights")
    script = (
        "import json, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from esrgan.io.imageio import DecodedImage\n"
        "from esrgan.pipeline import Upscaler\n"
        "from esrgan.settings import Settings\n"
        "from esrgan.models.store import ModelStore\n"
        "folder = Path(sys.argv[1])\n"
        "store = ModelStore(folder, ncnn_dir=folder / 'none')\n"
        "upscaler = Upscaler(store, Settings(device='cpu', weights_folder=folder))\n"
        "image = DecodedImage(np.full((9, 11, 3), 0.4, np.float32))\n"
        "print(json.dumps([upscaler.upscale(image, 4, model=m).provenance.precision\n"
        "                  for m in ('tiny-faithful', 'tiny-fragile')]))\n"
    )
    env = {**os.environ, **AVX2_CAPS}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "weights")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["fp32", "fp32"]
    assert not (tmp_path / "weights" / "converted" / PRECISION_FILE).exists()


def run_checkpoints(folder) -> dict[str, object]:
    """Two fine-tuning runs' checkpoints: the same file name, the same name inside ("finetuned-run")."""
    paths = {}
    for kind, fragile in (("faithful", False), ("fragile", True)):
        path = folder / kind / "model.pth"
        path.parent.mkdir(parents=True)
        torch.save({"params_ema": tiny_compact(fragile).state_dict(), "name": "finetuned-run"}, path)
        paths[kind] = path
    return paths


def test_a_checkpoint_path_is_measured_from_its_file_and_kept_by_path_and_hash(tmp_path):
    """The bf16 measurement of a checkpoint given by its path, on any CPU: the candidates say bf16
    is native (bf16 is emulated where it is not, with the same verdicts on these two networks)."""
    store = ModelStore(tmp_path / "weights", ncnn_dir=tmp_path / "no-shipped-weights")
    paths = run_checkpoints(tmp_path)
    figures_file = tmp_path / PRECISION_FILE
    figures = PrecisionStore(figures_file)
    chosen = {kind: figures.choose(store, str(path), "bf16", automatic=True, measure=True,
                                   candidates=("fp32", "bf16")) for kind, path in paths.items()}
    assert chosen == {"faithful": "bf16", "fragile": "fp32"}
    keys = {kind: store.key(str(path)) for kind, path in paths.items()}
    for kind, path in paths.items():
        assert keys[kind] == ModelKey(str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest())
    assert set(json.loads(figures_file.read_text())) == {key.text for key in keys.values()}  # no "finetuned-run"
    again = PrecisionStore(figures_file)
    assert again.get(keys["faithful"]).psnr >= MIN_MODEL_PSNR > again.get(keys["fragile"]).psnr
    # Without bf16 among the candidates (an AVX2 CPU, or caps), nothing is measured: fp32.
    fresh = PrecisionStore(tmp_path / "elsewhere.json")
    assert fresh.choose(store, str(paths["faithful"]), "bf16", True, True, candidates=("fp32",)) == "fp32"
    assert not (tmp_path / "elsewhere.json").exists()
    # A file changed in place is another model: its old figures do not stand for it.
    torch.save({"params_ema": tiny_compact(True).state_dict(), "name": "finetuned-run"}, paths["faithful"])
    assert again.get(store.key(str(paths["faithful"]))) is None


def test_a_checkpoint_path_runs_learns_its_rate_and_estimates_under_its_own_key(tmp_path, photo):
    """The engine's API with a path where a name would be: the run, its learned rate, the estimate;
    the same name in the weights folder is another model with figures of its own."""
    weights = tmp_path / "weights"
    store = ModelStore(weights, ncnn_dir=tmp_path / "no-shipped-weights")
    path = run_checkpoints(tmp_path)["faithful"]
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32", weights_folder=weights))
    result = upscaler.upscale(photo, 4, model=str(path))
    assert result.image.width == photo.width * 4 and result.provenance.model == "finetuned-run"
    key = store.key(str(path))
    rate = upscaler.rates.get(key)
    assert rate is not None and rate > 0
    estimate = upscaler.estimate_seconds(str(path), 30, 20)
    assert estimate == pytest.approx(rate * upscaler.work_pixels(30, 20, str(path)))
    weights.mkdir(exist_ok=True)
    (weights / "mine.pth").write_bytes(path.read_bytes())  # now also a catalogued "finetuned-run"
    assert store.key("finetuned-run") == ModelKey("finetuned-run")
    assert upscaler.rates.get(ModelKey("finetuned-run")) is None
