"""Choosing the fastest faithful way to run on this machine, by measurement that load cannot poison.

Precision and memory layout are settings the user can force (``--precision``, ``--backend``).
Left on ``auto``, the CPU choice works in two stages:

1. Only precisions the CPU runs natively are candidates. fp32 always; bfloat16 only where the CPU
   has bf16 instructions (x86 ``avx512_bf16`` / ``amx_bf16`` with torch's AVX-512 kernels, aarch64
   ``bf16``) and neither ``ATEN_CPU_CAPABILITY`` nor ``ONEDNN_MAX_CPU_ISA`` caps the kernels below
   them. Emulated bf16 is 5-10x slower than fp32, so on an AVX2-only CPU it is never even tried.
2. This calibration runs x4plus on a small procedural test image in every torch candidate,
   interleaved over several rounds, and compares them by their fastest round: load from other
   processes only ever adds time, so the minimum of interleaved rounds is what the CPU can do, and
   one busy moment cannot make a slower precision look faster. bf16 is chosen only if it is clearly
   faster (`MIN_SPEEDUP`) and within `MIN_FAITHFUL_PSNR` of the fp32 output.

The verdict is recorded in ``weights/converted/`` per CPU, kernel cap and torch version, with the
rate it measured: the rate estimates start from, and the precision of a model not measured yet.
Each model's own backend and precision (torch or the shipped graph on ncnn) are then measured on
that model, once, by `esrgan.runtime.per_model`. The pipeline reports the rate real jobs achieve
(`rate_disagrees`); a recorded calibration whose jobs run far slower than it said is measured
again. CUDA uses fp16, channels-last; a Vulkan device runs ncnn with fp16 storage (fp32 where asked).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from esrgan.errors import InvalidOptionError, RemasterError
from esrgan.runtime.measure import NCNN, fastest_faithful, ncnn_version, psnr_to, test_image, time_interleaved

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
Backend = Literal["auto", "torch", "torch-cl", "compiled", "ncnn"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
# compiled: esrgan/runtime/compiled.py; ncnn: esrgan/runtime/ncnn_backend.py
BACKENDS: tuple[str, ...] = ("auto", "torch", "torch-cl", "compiled", NCNN)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_FAITHFUL_PSNR = 40.0  # dB to the fp32 output: below this a setting is not the default
MIN_SPEEDUP = 1.2  # a lower precision must win by this much to be worth its (small) error
CALIBRATION_MODEL = "realesrgan-x4plus"
CALIBRATION_SIDE = 64
CALIBRATION_ROUNDS = 3  # interleaved rounds per candidate; the fastest of each counts
# A job on the calibration model running this many times slower per pixel than the calibration
# measured means the record is wrong for this machine (or was taken under load): measure again,
# but not more often than RECHECK_INTERVAL_S, so a loaded machine does not calibrate every job.
RECHECK_FACTOR = 3.0
RECHECK_INTERVAL_S = 600.0
RECHECK_MIN_PIXELS = CALIBRATION_SIDE**2  # smaller jobs are dominated by fixed costs
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still allow native bf16 convolutions.
ONEDNN_BF16_ISA_MARKS = ("BF16", "AMX", "FP16", "AVX10", "ALL", "DEFAULT")


@dataclass(frozen=True)
class Runtime:
    """How the networks run: dtype and memory layout, and why. On the CPU with precision ``auto``
    this is the calibration's torch choice; each model's own is `esrgan.runtime.per_model`'s."""

    precision: str
    channels_last: bool
    reason: str
    seconds_per_pixel: float | None = None  # x4plus at 4x, as measured by the calibration
    engine: str = "torch"  # or "ncnn": the shipped graph on ncnn (``precision`` is then its storage)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]

    @property
    def backend(self) -> str:
        if self.engine == NCNN:
            return NCNN
        return "torch-cl" if self.channels_last else "torch"


@dataclass(frozen=True)
class Calibration:
    """A recorded verdict: the fastest round of each torch precision tried, and the choice.

    ``bf16_seconds`` and ``bf16_psnr`` are None where bf16 was not a candidate (no native support).
    """

    machine: str
    fp32_seconds: float
    bf16_seconds: float | None
    bf16_psnr: float | None
    chosen: str
    rounds: int
    measured_at: float

    @property
    def seconds_per_pixel(self) -> float:
        seconds = self.bf16_seconds if self.chosen == "bf16" else self.fp32_seconds
        return float(seconds) / CALIBRATION_SIDE**2

    def describe(self) -> str:
        if self.bf16_seconds is None:
            return f"measured here: fp32 {self.fp32_seconds:.2f}s; bf16 not native on this CPU, not tried"
        return (f"measured here (best of {self.rounds} interleaved rounds): fp32 {self.fp32_seconds:.2f}s, "
                f"bf16 {self.bf16_seconds:.2f}s at {self.bf16_psnr:.1f} dB to fp32")


def _onednn_isa_cap() -> str:
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 ``flags``, aarch64 ``Features``); empty if unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16() -> tuple[bool, str]:
    """Whether this CPU, as torch and oneDNN are allowed to use it, runs bf16 natively; and why."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    cap = _onednn_isa_cap()
    if cap and not any(mark in cap for mark in ONEDNN_BF16_ISA_MARKS):
        return False, f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below bf16 instructions"
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        if not capability.startswith("AVX512"):
            return False, f"torch runs {capability} kernels here (no AVX-512)"
        present = [flag for flag in X86_BF16_FLAGS if flag in flags]
        if not present:
            return False, "the CPU has no avx512_bf16 or amx_bf16"
        return True, f"native bf16 ({', '.join(present)})"
    if machine in ("aarch64", "arm64") and "bf16" in flags:
        return True, "native bf16 (bf16)"
    return False, f"no native bf16 known on {machine or 'this CPU'}"


def cpu_candidates() -> tuple[str, ...]:
    """The precisions worth measuring on this CPU: fp32, and bf16 only where it is native."""
    return ("fp32", "bf16") if native_bf16()[0] else ("fp32",)


def machine_key() -> str:
    """What a calibration is valid for: the CPU model, its torch kernels and caps, the torch (and ncnn) version."""
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    kernels = torch.backends.cpu.get_cpu_capability()
    isa = _onednn_isa_cap() or "oneDNN uncapped"
    return f"{cpu} | {kernels} | {isa} | torch {torch.__version__} | {torch.get_num_threads()} threads{ncnn_version()}"


def read_calibration(record: Path | None) -> Calibration | None:
    """The recorded calibration if it is valid for this machine as it is now, else None (a record
    of another format, e.g. one that also timed ncnn, is measured again)."""
    if record is None or not record.is_file():
        return None
    try:
        saved = Calibration(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return saved if saved.machine == machine_key() and saved.chosen in DTYPES else None


def calibrate_cpu(store, record: Path | None, *, fresh: bool = False, candidates: tuple[str, ...] | None = None,
                  rounds: int = CALIBRATION_ROUNDS, side: int = CALIBRATION_SIDE) -> Calibration:
    """Measure the candidate precisions (channels-last) on the CPU; read or write the record.

    Args:
        store: The `ModelStore` that loads x4plus.
        record: Where the verdict is kept (None: measure, keep nothing).
        fresh: Measure even if a valid record exists.
        candidates: Precisions to try; default `cpu_candidates()` (fp32, plus bf16 where native).
        rounds: Interleaved timed rounds per candidate (1 where there is only one candidate: it
            then measures the rate for estimates, and jobs correct it; see `rate_disagrees`).
        side: Test image side (x4plus input pixels); the record's rates assume the default.

    Raises:
        RemasterError: No x4plus weights to measure with (from the store).
    """
    if not fresh:
        saved = read_calibration(record)
        if saved is not None:
            return saved
    candidates = candidates or cpu_candidates()
    if len(candidates) == 1:  # nothing to choose: one round gives the rate for estimates
        rounds = 1
    x = test_image(side).to(memory_format=torch.channels_last)
    modules = {}
    for name in candidates:
        try:
            modules[name] = store.load(CALIBRATION_MODEL, "cpu", DTYPES[name], channels_last=True).module
        except RuntimeError as exc:  # no kernels for this dtype at all
            log.info("%s unavailable on this CPU: %s", name, exc)
    inputs = {name: x.to(DTYPES[name]) for name in modules}
    outputs: dict[str, torch.Tensor] = {}

    def runner(name: str) -> Callable[[], object]:
        def run() -> None:
            outputs[name] = modules[name](inputs[name])
        return run

    with torch.inference_mode():
        for name in modules:  # warm the kernels, untimed
            modules[name](inputs[name][..., :16, :16])
        seconds = time_interleaved({name: runner(name) for name in modules}, rounds)
    reference = outputs["fp32"].float().clamp(0, 1)
    psnr = {name: psnr_to(outputs[name].float().clamp(0, 1), reference) for name in seconds if name != "fp32"}
    result = Calibration(machine_key(), round(seconds["fp32"], 4), round(seconds["bf16"], 4) if "bf16" in seconds
                         else None, psnr.get("bf16"), fastest_faithful(seconds, psnr, MIN_SPEEDUP, MIN_FAITHFUL_PSNR),
                         rounds, round(time.time(), 1))
    log.info("CPU calibration: %s -> %s", result.describe(), result.chosen)
    if record is not None:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            temporary = record.with_suffix(".part")
            temporary.write_text(json.dumps(asdict(result)))
            temporary.replace(record)
        except OSError:
            log.warning("could not record the calibration in %s", record)
    return result


def check_options(device: torch.device, precision: str, backend: str) -> None:
    """Raise InvalidOptionError for a precision or backend the engine does not offer on ``device``."""
    if precision not in PRECISIONS:
        raise InvalidOptionError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if backend not in BACKENDS:
        raise InvalidOptionError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if device.type == "vulkan":
        if backend not in ("auto", NCNN) or precision not in ("auto", "fp16", "fp32"):
            raise InvalidOptionError(f"a Vulkan device runs the ncnn backend in fp16 or fp32 storage, not "
                                     f"{backend} {precision}")
        return
    if precision == "fp16" and device.type != "cuda":
        raise InvalidOptionError("fp16 runs on CUDA (and Vulkan) only; on the CPU use fp32 or bf16")
    if backend == NCNN and device.type == "cuda":
        raise InvalidOptionError("the ncnn backend runs on the CPU and on Vulkan devices, not CUDA (--device vulkan)")


def needs_calibration(device: torch.device, precision: str, record: Path | None, store=None,
                      backend: str = "auto") -> bool:
    """Whether `choose_runtime` would measure the CPU now (it is left to choose, and nothing valid is recorded)."""
    return (precision == "auto" and device.type == "cpu" and backend != NCNN and store is not None
            and read_calibration(record) is None)


def choose_runtime(device: torch.device, precision: str = "auto", backend: str = "auto", store=None,
                   record: Path | None = None, *, fresh: bool = False) -> Runtime:
    """The precision and layout to run with: forced by the user, or chosen by measurement.

    Raises:
        InvalidOptionError: An unknown precision or backend, or fp16 off CUDA.
    """
    check_options(device, precision, backend)
    channels_last = backend != "torch"
    if device.type == "vulkan":
        storage = "fp32" if precision == "fp32" else "fp16"
        return Runtime(storage, False, f"ncnn on Vulkan, {storage} storage", engine=NCNN)
    if backend == NCNN:
        storage = "fp32" if precision == "auto" else precision
        return Runtime(storage, False, f"ncnn on the CPU, {storage} (Winograd)", engine=NCNN)
    if precision != "auto":
        return Runtime(precision, channels_last, "chosen by the user")
    if device.type == "cuda":
        return Runtime("fp16", channels_last, "fp16 on CUDA")
    if store is None:
        return Runtime("fp32", channels_last, "no calibration")
    try:
        calibration = calibrate_cpu(store, record, fresh=fresh)
    except RemasterError as exc:  # e.g. no x4plus weights to measure with
        return Runtime("fp32", channels_last, f"not calibrated: {exc}")
    return Runtime(calibration.chosen, channels_last, calibration.describe(), calibration.seconds_per_pixel)


def rate_disagrees(runtime: Runtime, seconds_per_pixel: float, pixels: int) -> bool:
    """Whether a job's measured rate on the calibration model (seconds per input pixel of the tiled
    run, context included) is far worse than the calibration promised for ``runtime``."""
    if runtime.seconds_per_pixel is None or pixels < RECHECK_MIN_PIXELS:
        return False
    return seconds_per_pixel > RECHECK_FACTOR * runtime.seconds_per_pixel
