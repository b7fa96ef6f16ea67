"""Backend and precision per model, by measurement: on the CPU each model is measured once, the first
time it runs with ``auto``, in every candidate this CPU has for it (torch fp32; torch bf16 only where
native; its shipped graph on ncnn in fp32 and in bf16 storage), and runs in the fastest faithful one.

The choice is checked against figures written into the record (never against this machine's speed);
the measurement itself is checked for what it records and that it happens once. Two tiny networks
stand in for bf16's fidelity: one as initialised, and one whose first layer adds a large constant
that the next layer takes away again. In fp32 that costs nothing; in bf16 (8 bits of mantissa) the
large activations lose the small ones, as a real model's outliers can.
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
from esrgan.cli.main import main as cli_main
from esrgan.io.imageio import DecodedImage, read_image
from esrgan.listing import models_listing
from esrgan.models.keys import ModelKey
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.runtime import choose as runtime
from esrgan.runtime import per_model
from esrgan.runtime.measure import ncnn_candidates
from esrgan.runtime.per_model import MIN_MODEL_PSNR, PRECISION_FILE, ModelChoices, model_candidates
from esrgan.settings import Settings
from tests.conftest import ROOT, dataset_image, record_figures

AVX2_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
OFFSET = 1000.0  # added by the first layer, taken away by the next: harmless in fp32, ruinous in bf16
COMPACT = "realesr-animevideov3"  # small real models with shipped graphs
UPCONV = "waifu2x-upconv7-anime-x2"
needs_ncnn = pytest.mark.skipif(not ncnn_candidates(), reason="the ncnn wheel is not installed (requirements.txt)")


def tiny_compact(fragile: bool) -> torch.nn.Module:
    torch.manual_seed(7)
    network = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4).eval()
    if fragile:
        first, second = network.body[0], network.body[2]
        with torch.no_grad():
            first.bias += OFFSET  # every activation positive: the PReLU between passes it unchanged
            second.bias -= OFFSET * second.weight.sum(dim=(1, 2, 3))
    return network


def calibrated(folder, chosen: str = "fp32") -> None:
    """A CPU calibration recorded in ``folder`` (this machine's key), so nothing measures the CPU."""
    record = runtime.Calibration(runtime.machine_key(), 1.0, 0.5 if chosen == "bf16" else None,
                                 50.0 if chosen == "bf16" else None, chosen, 3, 0.0)
    (folder / "converted").mkdir(parents=True, exist_ok=True)
    (folder / "converted" / "calibration.json").write_text(json.dumps(asdict(record)))


def tiny_checkpoints(folder) -> None:
    """Both tiny models as checkpoints in the weights folder ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, fragile in (("tiny-faithful", False), ("tiny-fragile", True)):
        torch.save({"params_ema": tiny_compact(fragile).state_dict()}, folder / f"{name}.pth")


def beside(store: ModelStore, folder) -> ModelStore:
    """A weights folder of its own (its own records) holding the session's converted weights."""
    (folder / "converted").mkdir(parents=True)
    for converted in (store.weights_dir / "converted").glob("*.safetensors"):
        (folder / "converted" / converted.name).symlink_to(converted)
    calibrated(folder)
    return ModelStore(folder)


@pytest.fixture
def photo() -> DecodedImage:
    return DecodedImage(np.ascontiguousarray(read_image(dataset_image("astronaut_lr4.png")).pixels[30:53, 40:67]))


def made(result) -> tuple[str, str]:
    return result.provenance.backend, result.provenance.precision


@needs_ncnn
def test_each_model_runs_on_the_backend_its_own_figures_choose(store, tmp_path, photo):
    """Figures where ncnn loses for one model and wins for another: each runs as its own say."""
    own = beside(store, tmp_path / "weights")
    record_figures(own, COMPACT, "fp32")
    record_figures(own, UPCONV, "ncnn-bf16")
    figures_file = own.weights_dir / "converted" / PRECISION_FILE
    before = figures_file.read_text()
    upscaler = Upscaler(own, Settings(device="cpu", weights_folder=own.weights_dir))
    assert made(upscaler.upscale(photo, 4, model=COMPACT)) == ("torch-cl", "fp32")
    assert made(upscaler.upscale(photo, 2, model=UPCONV)) == ("ncnn", "bf16")
    assert figures_file.read_text() == before  # read, nothing measured
    rows = {m["name"]: m for m in models_listing(upscaler)["models"]}
    assert (rows[COMPACT]["backend"], rows[COMPACT]["precision"]) == ("torch", "fp32")
    assert (rows[UPCONV]["backend"], rows[UPCONV]["precision"]) == ("ncnn", "bf16")
    assert set(rows[UPCONV]["candidates"]) == set(model_candidates(own, UPCONV))
    assert rows["realesrgan-x4plus"]["backend"] is None  # never measured here
    # The user's settings win over the figures.
    for forced, expected in (({"backend": "torch"}, ("torch", "fp32")), ({"precision": "fp32"}, ("torch-cl", "fp32")),
                             ({"backend": "ncnn"}, ("ncnn", "fp32"))):
        engine = Upscaler(own, Settings(device="cpu", weights_folder=own.weights_dir, **forced))
        assert made(engine.upscale(photo, 2, model=UPCONV)) == expected, forced


def test_a_model_is_measured_once_on_its_first_auto_run(store, tmp_path, photo, monkeypatch, capsys):
    own = beside(store, tmp_path / "weights")
    candidates = model_candidates(own, COMPACT)
    if len(candidates) == 1:
        pytest.skip("one way to run it on this CPU (torch fp32): nothing to measure")
    figures_file = own.weights_dir / "converted" / PRECISION_FILE
    upscaler = Upscaler(own, Settings(device="cpu", weights_folder=own.weights_dir))
    assert upscaler.load(COMPACT).backend == "torch-cl" and not figures_file.exists()  # as estimates load: unmeasured
    first = upscaler.upscale(photo, 4, model=COMPACT)
    kept = json.loads(figures_file.read_text())
    assert list(kept) == [COMPACT]  # that one model only
    figures = ModelChoices(figures_file).get(ModelKey(COMPACT))
    assert set(figures.seconds) == set(candidates) and set(figures.psnr) == set(candidates) - {"fp32"}
    assert all(seconds > 0 for seconds in figures.seconds.values())
    assert "bf16" in candidates or "bf16" not in figures.seconds  # torch bf16 only where native
    if "ncnn-fp32" in candidates:
        assert figures.psnr["ncnn-fp32"] >= MIN_MODEL_PSNR  # the same network, another engine
    engine, precision = per_model.runs_as(figures.chosen())
    assert made(first) == ("torch-cl" if engine == "torch" else engine, precision)
    # Measured once: a new engine reads the record, and so does `models --measure`.
    monkeypatch.setattr(per_model, "measure_model", lambda *a, **k: pytest.fail("measured again"))
    before = figures_file.read_text()
    again = Upscaler(ModelStore(own.weights_dir), Settings(device="cpu", weights_folder=own.weights_dir))
    assert made(again.upscale(photo, 4, model=COMPACT)) == made(first)
    monkeypatch.setenv("REMASTER_WEIGHTS_FOLDER", str(own.weights_dir))
    assert cli_main(["models", "--measure", COMPACT]) == 0
    listed = capsys.readouterr().out
    assert f"{COMPACT}: " in listed and f"-> {figures.chosen()}" in listed
    assert f"runs on {engine} {precision} (measured)" in listed  # the listing line
    assert figures_file.read_text() == before
    # A record of the older, bf16-only kind counts as never measured.
    old = {"model": COMPACT, "machine": runtime.machine_key(), "psnr": 50.0, "fp32_seconds": 1.0,
           "bf16_seconds": 0.5, "measured_at": 0.0}
    figures_file.write_text(json.dumps({COMPACT: old}))
    assert ModelChoices(figures_file).get(ModelKey(COMPACT)) is None


def test_each_model_runs_in_bf16_only_if_it_stays_faithful_in_it(tmp_path, photo, monkeypatch):
    """bf16 is a candidate here by the test's say (emulated where the CPU has no bf16: slow, but the
    same rounding), so the fidelity verdict is checked on any CPU; the speed verdict is the figures'."""
    monkeypatch.setattr(per_model, "cpu_candidates", lambda: ("fp32", "bf16"))
    tiny_checkpoints(tmp_path / "weights")
    calibrated(tmp_path / "weights", "bf16")
    store = ModelStore(tmp_path / "weights", ncnn_dir=tmp_path / "no-shipped-weights")
    upscaler = Upscaler(store, Settings(device="cpu", weights_folder=tmp_path / "weights"))
    figures_file = tmp_path / "weights" / "converted" / PRECISION_FILE
    fragile = upscaler.upscale(photo, 4, model="tiny-fragile", float_result=True)
    assert made(fragile) == ("torch-cl", "fp32")
    assert set(json.loads(figures_file.read_text())) == {"tiny-fragile"}  # that one model only
    faithful = upscaler.upscale(photo, 4, model="tiny-faithful")
    choices = ModelChoices(figures_file)
    figures = {name: choices.get(ModelKey(name)) for name in ("tiny-faithful", "tiny-fragile")}
    assert figures["tiny-faithful"].psnr["bf16"] >= MIN_MODEL_PSNR > figures["tiny-fragile"].psnr["bf16"]
    assert faithful.provenance.precision == figures["tiny-faithful"].chosen()  # bf16 where also 1.2x faster
    # Its fp32 result is the network's own: what it computes in fp32, directly.
    with torch.inference_mode():
        x = torch.from_numpy(photo.pixels).permute(2, 0, 1)[None]
        direct = tiny_compact(True)(x)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    np.testing.assert_allclose(fragile.image.pixels, direct, atol=2e-4)  # the offset costs fp32 a little
    rows = {m["name"]: m for m in models_listing(upscaler)["models"]}
    assert rows["tiny-fragile"]["precision"] == "fp32" and rows["tiny-fragile"]["bf16_psnr"] < MIN_MODEL_PSNR
    assert rows["tiny-fragile"]["backend"] == "torch" and set(rows["tiny-fragile"]["candidates"]) == {"fp32", "bf16"}
    # The user's choice stands: forced bf16 runs the fragile model in bf16, measuring nothing.
    forced = Upscaler(store, Settings(device="cpu", precision="bf16", weights_folder=tmp_path / "weights"))
    assert forced.upscale(photo, 4, model="tiny-fragile").provenance.precision == "bf16"


def test_avx2_caps_never_measure_torch_bf16(store, tmp_path):
    """Capped to AVX2 kernels, torch bf16 would be emulated: it is never a candidate. A checkpoint
    then has one way to run (torch fp32) and is not measured; a model with a shipped graph is
    measured in torch fp32 and on ncnn only."""
    own = beside(store, tmp_path / "weights")
    tiny_checkpoints(own.weights_dir)
    script = (
        "import json, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from esrgan.io.imageio import DecodedImage\n"
        "from esrgan.pipeline import Upscaler\n"
        "from esrgan.settings import Settings\n"
        "from tests.test_per_model import calibrated\n"
        "folder = Path(sys.argv[1])\n"
        "calibrated(folder)  # under these caps: a machine of its own\n"
        "upscaler = Upscaler(None, Settings(device='cpu', weights_folder=folder))\n"
        "image = DecodedImage(np.full((9, 11, 3), 0.4, np.float32))\n"
        f"models = ('tiny-faithful', 'tiny-fragile', {COMPACT!r})\n"
        "print(json.dumps([upscaler.upscale(image, 4, model=m).provenance.precision for m in models]))\n"
    )
    env = {**os.environ, **AVX2_CAPS}
    done = subprocess.run([sys.executable, "-c", script, str(own.weights_dir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])[:2] == ["fp32", "fp32"]
    kept = json.loads((own.weights_dir / "converted" / PRECISION_FILE).read_text()) if ncnn_candidates() else {}
    assert set(kept) == ({COMPACT} if ncnn_candidates() else set())  # the checkpoints: nothing measured
    for figures in kept.values():
        assert set(figures["seconds"]) == {"fp32", *ncnn_candidates()}  # never torch bf16


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
    """The measurement of a checkpoint given by its path, on any CPU: torch's candidates only (it has
    no ncnn graph), bf16 among them by the test's say (emulated where not native, same verdicts)."""
    store = ModelStore(tmp_path / "weights", ncnn_dir=tmp_path / "no-shipped-weights")
    paths = run_checkpoints(tmp_path)
    figures_file = tmp_path / PRECISION_FILE
    choices = ModelChoices(figures_file)
    figures = {kind: choices.measured(store, str(path), candidates=("fp32", "bf16")) for kind, path in paths.items()}
    assert figures["fragile"].chosen() == "fp32" and figures["faithful"].psnr["bf16"] >= MIN_MODEL_PSNR
    assert model_candidates(store, str(paths["faithful"])) == runtime.cpu_candidates()  # no ncnn for a checkpoint
    keys = {kind: store.key(str(path)) for kind, path in paths.items()}
    for kind, path in paths.items():
        assert keys[kind] == ModelKey(str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest())
    assert set(json.loads(figures_file.read_text())) == {key.text for key in keys.values()}  # no "finetuned-run"
    again = ModelChoices(figures_file)
    assert again.get(keys["faithful"]).psnr["bf16"] >= MIN_MODEL_PSNR > again.get(keys["fragile"]).psnr["bf16"]
    # With torch fp32 its only candidate (an AVX2 CPU, or caps), nothing is measured.
    if runtime.cpu_candidates() == ("fp32",):
        fresh = ModelChoices(tmp_path / "elsewhere.json")
        assert fresh.choose(store, str(paths["faithful"]), "fp32", measure=True) == ("torch", "fp32")
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
