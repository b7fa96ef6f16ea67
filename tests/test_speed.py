"""Every way of running the network against fp32 torch on a real image; the measured choice."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from esrgan.errors import InvalidOptionError
from esrgan.io.imageio import DecodedImage, read_image
from esrgan.pipeline import Upscaler
from esrgan.runtime import choose as runtime
from esrgan.runtime.choose import CALIBRATION_MODEL, DTYPES, MIN_FAITHFUL_PSNR, calibrate_cpu, choose_runtime
from esrgan.settings import Settings
from esrgan.tiling.plan import TileOptions
from esrgan.tiling.run import upscale_tiled
from tests.conftest import dataset_image, psnr

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return read_image(dataset_image("chelsea_lr3.png")).pixels[30:78, 40:88]


def run(store, photo, device="cpu", dtype=torch.float32, channels_last=False) -> np.ndarray:
    loaded = store.load("realesrgan-x4plus", device, dtype, channels_last)
    return upscale_tiled(loaded.module, photo, scale=4, options=TileOptions(tile=0), device=device,
                         dtype=dtype, channels_last=channels_last)


@pytest.fixture(scope="module")
def reference(store, photo) -> np.ndarray:
    return run(store, photo)


def test_channels_last_computes_the_same(store, photo, reference):
    assert psnr(run(store, photo, channels_last=True), reference) > 60


def test_bf16_on_the_cpu_stays_faithful_to_fp32(store, photo, reference):
    # torch has bf16 kernels on every x86-64 and arm64 CPU (emulated where not native): an error is a failure.
    out = run(store, photo, dtype=torch.bfloat16, channels_last=True)
    assert psnr(out, reference) >= MIN_FAITHFUL_PSNR


def test_calibration_is_measured_once_recorded_and_reused(store, tmp_path, monkeypatch):
    record = tmp_path / "calibration.json"
    chosen = choose_runtime(torch.device("cpu"), store=store, record=record)
    saved = json.loads(record.read_text())
    assert saved["chosen"] in ("fp32", "bf16")  # torch's precisions: each model's backend is its own figures'
    assert (chosen.backend, chosen.precision) == ("torch-cl", saved["chosen"])
    assert saved["machine"] == runtime.machine_key() and saved["fp32_seconds"] > 0
    candidates = 1 + runtime.native_bf16()[0]
    assert saved["rounds"] == (runtime.CALIBRATION_ROUNDS if candidates > 1 else 1)  # one candidate: timed once
    if runtime.native_bf16()[0]:
        assert saved["bf16_seconds"] > 0
    else:  # emulated bf16 is never even tried
        assert saved["bf16_seconds"] is None and chosen.precision == "fp32"
    if chosen.precision == "bf16":
        assert saved["bf16_psnr"] >= MIN_FAITHFUL_PSNR
    monkeypatch.setattr(runtime, "time_interleaved", lambda *a: pytest.fail("measured again"))
    assert choose_runtime(torch.device("cpu"), store=store, record=record).precision == chosen.precision
    # A record of the format that also timed ncnn for every model is measured again.
    record.write_text(json.dumps({**saved, "chosen": "ncnn-bf16", "ncnn_seconds": {"ncnn-bf16": 0.5},
                                  "ncnn_psnr": {"ncnn-bf16": 50.0}}))
    assert runtime.read_calibration(record) is None


class RoundsSeen:
    """A model store for `calibrate_cpu` whose networks call ``hook(precision, round)`` inside each
    timed call (after the untimed warm-up call), as a busy moment would come inside it."""

    PRECISIONS = {dtype: name for name, dtype in DTYPES.items()}

    def __init__(self, store, hook) -> None:
        self.store, self.hook = store, hook

    def __getattr__(self, name):  # everything else as the store has it
        return getattr(self.store, name)

    def load(self, name, device="cpu", dtype=torch.float32, channels_last=False):
        loaded = self.store.load(name, device, dtype, channels_last)
        precision, calls = self.PRECISIONS[dtype], itertools.count(-1)

        def module(x):
            index = next(calls)
            if index >= 0:
                self.hook(precision, index)
            return loaded.module(x)

        return dataclasses.replace(loaded, module=module)


AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
CALIBRATE_IN_CHILD = """
import json, sys, torch
from esrgan.runtime import choose as runtime
from esrgan.models.store import ModelStore
from tests.test_speed import RoundsSeen
torch.set_num_threads(2)
timed = []
result = runtime.calibrate_cpu(RoundsSeen(ModelStore(sys.argv[1]), lambda name, index: timed.append(name)), None,
                               rounds=1, side=32)
print(json.dumps({"native": runtime.native_bf16(), "chosen": result.chosen, "timed": timed,
                  "bf16_seconds": result.bf16_seconds, "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def test_an_avx2_only_cpu_chooses_fp32_without_trying_bf16(store, weights_dir):
    store.load(CALIBRATION_MODEL)  # converted once, in the shared weights folder
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, **AVX2_ONLY, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", CALIBRATE_IN_CHILD, str(weights_dir)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=900)  # a guard, not a bound
    assert done.returncode == 0, done.stderr[-2000:]
    child = json.loads(done.stdout.splitlines()[-1])
    assert child["capability"] == "AVX2"
    assert child["native"][0] is False and "AVX2" in child["native"][1]
    assert "bf16" not in child["timed"] and child["bf16_seconds"] is None  # torch bf16 would be emulated
    assert child["chosen"] == "fp32"


def test_native_bf16_needs_the_instructions_and_no_cap(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert runtime.native_bf16()[0] and runtime.cpu_candidates() == ("fp32", "bf16")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert runtime.native_bf16() == (False, "ONEDNN_MAX_CPU_ISA=AVX512_CORE caps oneDNN below bf16 instructions")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert runtime.native_bf16()[0]
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert runtime.cpu_candidates() == ("fp32",)


def test_a_busy_moment_during_calibration_cannot_record_a_slower_choice(store):
    """Both precisions are tried, on a small image; bf16 is made the slower one whatever the CPU
    (every bf16 round also sleeps twice an fp32 round), so the verdict does not depend on this
    machine's speed. A busy moment inside one timed round of fp32 (a sleep three times as long as
    the bf16 round just before it, as load from another process would add) would have flipped a
    one-shot comparison; with interleaved rounds compared by their minima the verdict stands and
    the busy round does not count."""
    started: dict[tuple[str, int], float] = {}
    fp32_round: list[float] = []
    busy: list[float] = []

    def hook(name: str, index: int) -> None:  # rounds run fp32, bf16, then bf16, fp32 (ABBA)
        now = time.perf_counter()
        started[(name, index)] = now
        if name == "bf16":
            if not fp32_round:
                fp32_round.append(now - started[("fp32", 0)])
            time.sleep(2 * fp32_round[0] + 0.05)
        elif ("bf16", index) in started and not busy:  # fp32's turn right after bf16's
            busy.append(3 * (now - started[("bf16", index)]) + 0.2)
            time.sleep(busy[0])

    result = calibrate_cpu(RoundsSeen(store, hook), None, candidates=("fp32", "bf16"), rounds=2, side=16)
    assert busy, "the busy moment never happened"
    assert result.chosen == "fp32"
    assert result.fp32_seconds < busy[0] / 3  # the busy round did not count


def test_a_choice_far_slower_in_real_jobs_is_measured_again():
    promised = 1e-4
    promising = runtime.Runtime("fp32", True, "measured here", seconds_per_pixel=promised)
    pixels = runtime.RECHECK_MIN_PIXELS * 10
    assert not runtime.rate_disagrees(promising, promised * 1.5, pixels)  # noise, tiles of other sizes
    assert runtime.rate_disagrees(promising, promised * 10, pixels)
    assert not runtime.rate_disagrees(promising, promised * 10, 16)  # a tiny job is all fixed costs
    forced = choose_runtime(torch.device("cpu"), "fp32")
    assert not runtime.rate_disagrees(forced, promised * 10, pixels)  # the user's choice stands


def test_the_user_can_force_precision_and_layout():
    forced = choose_runtime(torch.device("cpu"), "fp32", "torch")
    assert (forced.precision, forced.backend, forced.reason) == ("fp32", "torch", "chosen by the user")
    with pytest.raises(InvalidOptionError, match="on CUDA \\(and Vulkan\\) only"):
        choose_runtime(torch.device("cpu"), "fp16")
    with pytest.raises(InvalidOptionError, match="precision must be one of"):
        choose_runtime(torch.device("cpu"), "int4")


def test_provenance_names_the_runtime(store):
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32", backend="torch"))
    result = upscaler.upscale(DecodedImage(np.full((8, 8, 3), 0.5, np.float32)), 4, model="realesr-animevideov3")
    assert (result.provenance.precision, result.provenance.backend) == ("fp32", "torch")


@cuda
def test_cuda_fp16_matches_cpu_fp32(store, photo, reference):
    out = run(store, photo, device="cuda", dtype=torch.float16, channels_last=True)
    assert psnr(out, reference) >= MIN_FAITHFUL_PSNR


@cuda
def test_cuda_is_the_automatic_device_with_fp16(store):
    upscaler = Upscaler(store, Settings())
    result = upscaler.upscale(DecodedImage(np.full((40, 40, 3), 0.5, np.float32)), 4)
    assert result.provenance.device.startswith("cuda") and result.provenance.precision == "fp16"
