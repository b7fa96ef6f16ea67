"""Speed of every way to run Real-ESRGAN here, against the official path, in one process sitting.

The reference ("official path") is what Real-ESRGAN's own inference does: the whole image at once,
fp32, NCHW, torch eager. Every other setting runs the same real photo crops and is reported with
its time, throughput, share of this machine's measured matmul ceiling, ratio to the reference in
the same round, PSNR of its output to the reference output, and peak RSS. Then the CLI end to end
(process start, model load, inference, encode) for a 256x256 photo at 4x, reference vs default,
and (``--split``) where a one-image CLI run's seconds go (bench/fixed_costs.py).

The reference row concatenates in its dense blocks as the official code does; the row after it is
the same fp32 NCHW network with the dense-block feature buffer (esrgan/archs/rrdbnet.py), which is
what this engine runs for NCHW fp32 on the CPU.

On the CPU the shipped graph on ncnn (fp32 with Winograd convolutions, bf16 storage) has rows of its
own, and ``--vulkan`` adds ncnn on every Vulkan device (lavapipe too), all in the same rounds.

    python bench/speed.py [--sizes 128,256,512] [--rounds 2] [--cli] [--split] [--big] [--vulkan]
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esrgan.archs.rrdbnet import ResidualDenseBlock  # noqa: E402
from esrgan.errors import RemasterError  # noqa: E402
from esrgan.models.store import ModelStore  # noqa: E402
from esrgan.pipeline import flops_per_pixel  # noqa: E402
from esrgan.runtime.choose import native_bf16  # noqa: E402
from esrgan.runtime.measure import ncnn_candidates  # noqa: E402
from esrgan.runtime.ncnn_backend import load_network, vulkan_devices  # noqa: E402
from esrgan.tiling.plan import TileOptions  # noqa: E402
from esrgan.tiling.run import upscale_tiled

DATASETS = Path(os.environ.get("REMASTER_DATASETS", ROOT.parent / "shared" / "datasets"))
PHOTO = DATASETS / "Set14" / "baboon.png"


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def matmul_ceiling(device: str, dtype: torch.dtype, n: int = 2048) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def crop(side: int) -> np.ndarray:
    with Image.open(PHOTO) as image:
        big = image.convert("RGB").resize((max(side, 500), max(side, 480)), Image.LANCZOS)
    return np.asarray(big, np.float32)[:side, :side] / 255.0


def calibration_crops(side: int = 48, per_image: int = 1) -> list[np.ndarray]:
    """(1, 3, side, side) crops of real photos for int8 calibration; the timed photo is left out."""
    rng = np.random.default_rng(0)
    crops = []
    for path in sorted((DATASETS / "Set14_LRx4").glob("*.png")):
        if path.stem.startswith(PHOTO.stem):
            continue
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), np.float32) / 255
        for _ in range(per_image):
            y = rng.integers(0, pixels.shape[0] - side + 1)
            x = rng.integers(0, pixels.shape[1] - side + 1)
            crops.append(np.ascontiguousarray(pixels[y : y + side, x : x + side].transpose(2, 0, 1))[None])
    return crops


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = (x.astype(np.float32) / 255 if x.dtype == np.uint8 else x for x in (a, b))  # an 8-bit result
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


COMPILED_TILE = 128  # one fixed compiled shape for every size (window 192 px with 32 px context)
TILE_PAD = 32  # the product's context per tile side (Settings.tile_pad)


def settings(device: str, extra: tuple[str, ...] = ()) -> list[tuple[str, str, torch.dtype, bool, int, str]]:
    """(label, device, dtype, channels_last, tile, runner); the first is the reference of its table.

    ``runner`` is "eager", "concat" (eager, dense blocks concatenating as the official code does),
    "graph" (CUDA graph), "compiled[:mode]" (esrgan/runtime/compiled.py), "int8:recipe:runtime"
    (bench/int8.py: ONNX Runtime or OpenVINO) or "ncnn:storage[:vulkan index]" (the shipped graph on
    ncnn: esrgan/runtime/ncnn_backend.py).
    ``extra`` adds the opt-in rows: "compiled", "int8", "vulkan" (every Vulkan device, lavapipe included).
    """
    if device == "cpu":
        rows = [("official: fp32 NCHW eager, whole (dense blocks concatenate)", "cpu", torch.float32, False, 0,
                 "concat"),
                ("fp32 NCHW eager, whole, dense-block feature buffer", "cpu", torch.float32, False, 0, "eager"),
                ("fp32 channels-last, whole", "cpu", torch.float32, True, 0, "eager")]
        if native_bf16()[0]:  # emulated bf16 is 5-10x slower than fp32: never a candidate, not timed
            rows += [("bf16 channels-last, whole", "cpu", torch.bfloat16, True, 0, "eager"),
                     ("bf16 channels-last, tiles 384 (CPU default here)", "cpu", torch.bfloat16, True, 384, "eager")]
        else:
            rows += [("fp32 channels-last, tiles 384 (CPU default here)", "cpu", torch.float32, True, 384, "eager")]
        if ncnn_candidates():  # the shipped graph on ncnn's CPU path, beside torch in the same rounds
            rows += [("ncnn fp32 (Winograd), tiles 384", "cpu", torch.float32, False, 384, "ncnn:fp32"),
                     ("ncnn bf16 storage, tiles 384", "cpu", torch.float32, False, 384, "ncnn:bf16")]
        if "vulkan" in extra:
            rows += [(f"ncnn Vulkan fp16 storage on {device}, tiles 256", "cpu", torch.float32, False, 256,
                      f"ncnn:fp16:{device.index}") for device in vulkan_devices()]
        if "compiled" in extra:
            rows += [(f"fp32 channels-last, tiles {COMPILED_TILE}", "cpu", torch.float32, True, COMPILED_TILE, "eager"),
                     (f"fp32 channels-last compiled (inductor), tiles {COMPILED_TILE}", "cpu", torch.float32, True,
                      COMPILED_TILE, "compiled")]
        if "int8" in extra:
            rows += [("int8 ONNX Runtime, first/last/conv5 in fp32 (PTQ), tiles 384", "cpu", torch.float32, False,
                      384, "int8:keep-sensitive:onnxruntime"),
                     ("int8 ONNX Runtime, every conv int8 (PTQ), tiles 384", "cpu", torch.float32, False, 384,
                      "int8:every-conv:onnxruntime"),
                     ("int8 OpenVINO, every conv int8 (PTQ), tiles 384", "cpu", torch.float32, False, 384,
                      "int8:every-conv:openvino")]
        return rows
    rows = [("cuda fp32 NCHW, whole (official --fp32)", "cuda", torch.float32, False, 0, "eager"),
            ("cuda fp16 NCHW, whole (official default)", "cuda", torch.float16, False, 0, "eager"),
            ("cuda fp16 channels-last, whole (default path's network)", "cuda", torch.float16, True, 0, "eager"),
            ("cuda bf16 channels-last, whole", "cuda", torch.bfloat16, True, 0, "eager"),
            ("cuda fp16 channels-last, tiles 512 x4 batch", "cuda", torch.float16, True, 512, "eager"),
            ("cuda fp16 channels-last, whole, eager in a CUDA graph", "cuda", torch.float16, True, 0, "graph")]
    if "compiled" in extra:  # largest size only: each new shape compiles again
        rows += [("cuda fp16 compiled (inductor, CUDA graphs), whole", "cuda", torch.float16, True, 0,
                  "compiled:reduce-overhead"),
                 ("cuda fp16 compiled (max-autotune, CUDA graphs), tiles 512 x4 batch (--backend compiled)", "cuda",
                  torch.float16, True, 512, "compiled")]
    return rows


class Graphed(torch.nn.Module):
    """An eager network replayed from a CUDA graph per input shape (no compiler: capture takes a
    second), to separate launch overhead from kernel time."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        from esrgan.runtime.compiled import _without_hooks

        self.module = _without_hooks(module)
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.stride(), x.dtype)
        if key not in self.graphs:
            static = x.clone(memory_format=torch.preserve_format)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # cuDNN picks its algorithms outside the capture
                    self.module(static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self.module(static)
            self.graphs[key] = (graph, static, out)
        graph, static, out = self.graphs[key]
        static.copy_(x)
        graph.replay()
        return out


class Clocked(torch.nn.Module):
    """Adds up the seconds spent inside the network's forward passes (device synchronised)."""

    def __init__(self, module, device: str) -> None:
        super().__init__()
        self.module, self.cuda, self.seconds = module, device == "cuda", 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = self.module(x)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - started
        return out


def concatenating(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` whose RRDB dense blocks concatenate, as the official code does."""
    twin = copy.deepcopy(module)
    for block in twin.modules():
        if isinstance(block, ResidualDenseBlock):
            block.feature_buffer = False
    return twin


def runnable(store: ModelStore, model: str, dev: str, dtype: torch.dtype, cl: bool, tile: int, runner: str):
    """The module a row calls: the loaded network, its compiled wrapper, or the int8 session."""
    loaded = None if runner.startswith("ncnn") else store.load(model, dev, dtype, cl)
    if runner.startswith("compiled"):
        from esrgan.runtime import compiled

        mode = runner.partition(":")[2] or None
        return compiled.compile_for_tiles(loaded.module, model=model, scale=loaded.entry.scale, tile=tile,
                                          tile_pad=TILE_PAD, size_multiple=loaded.size_multiple,
                                          batch=4 if dev == "cuda" and tile else 1, weights_dir=store.weights_dir,
                                          mode=mode)
    if runner == "graph":
        return Graphed(loaded.module)
    if runner.startswith("ncnn"):
        _, storage, *gpu = runner.split(":")
        return load_network(store, model, int(gpu[0]) if gpu else None, storage, torch.get_num_threads())[0]
    if runner == "concat":
        return concatenating(loaded.module)
    if runner.startswith("int8"):
        import int8  # bench/int8.py: research code, beside this script

        _, recipe, runtime = runner.split(":")
        return int8.load_int8(store, model, recipe, runtime)
    return loaded.module


def timed(module, image, device, dtype, channels_last, tile, fixed=False) -> tuple[float, float, np.ndarray]:
    """(seconds end to end, seconds inside the network, output) of one tiled run; ``fixed``: one
    window shape for every tile, as the compiled backend runs."""
    if device == "cuda":
        torch.cuda.synchronize()
    clocked = Clocked(module, device)
    started = time.perf_counter()
    options = TileOptions(tile=tile, tile_pad=TILE_PAD, batch=4 if device == "cuda" else 1, fixed_window=fixed)
    out = upscale_tiled(clocked, image, scale=4, options=options,
                        device=device, dtype=dtype, channels_last=channels_last)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, clocked.seconds, out


def model_table(store: ModelStore, sizes: list[int], rounds: int, device: str, model: str,
                extra: tuple[str, ...] = ()) -> None:
    if device == "cpu":
        dtypes = (torch.float32, torch.bfloat16) if native_bf16()[0] else (torch.float32,)
        ceilings = {("cpu", t): matmul_ceiling("cpu", t, 4096) for t in dtypes}
    else:
        dtypes = (torch.float32, torch.float16, torch.bfloat16)
        ceilings = {("cuda", t): matmul_ceiling("cuda", t, 8192) for t in dtypes}
    listed = ", ".join(f"{d} {str(t).split('.')[-1]} {v:.0f}" for (d, t), v in ceilings.items())
    print(f"matmul ceilings (GFLOP/s): {listed}")
    per_pixel = flops_per_pixel(store.load(model, "cpu").module)
    print(f"\n{model}: {per_pixel / 1e6:.1f} MFLOP per input pixel at 4x\n")
    memory = "peak GPU MB" if device == "cuda" else "peak RSS MB"
    header = ("| size | setting | s (best) | network s | MP/s in | GFLOP/s | % of matmul | vs first row | "
              f"PSNR to first row | {memory} |")
    rows = []
    for side in sizes:
        image = crop(side)
        best: dict[str, float] = {}
        network: dict[str, float] = {}
        outputs: dict[str, np.ndarray] = {}
        peaks: dict[str, float] = {}
        modules: dict[str, object] = {}
        warmed: set[str] = set()
        for _ in range(rounds):  # interleaved rounds: a noisy machine affects all settings alike
            for label, dev, dtype, cl, tile, runner in settings(device, extra):
                if "only-extra" in extra and runner == "eager" and label != settings(device)[0][0]:
                    continue
                if dev == "cpu" and side >= 512 and label.startswith("official") and label in best:
                    continue  # one round of the slowest reference at 512 is enough
                if runner.startswith("compiled") and side != max(sizes):
                    continue  # compiling is per shape: the largest size only
                try:
                    loaded = modules.get(label) or runnable(store, model, dev, dtype, cl, tile, runner)
                    modules[label] = loaded
                    if label not in warmed and runner not in ("eager", "concat"):  # compile / capture once
                        started = time.perf_counter()
                        timed(loaded, image, dev, dtype, cl, tile, runner.startswith("compiled"))
                        print(f"# {side} {label}: first run (compile or capture) {time.perf_counter() - started:.1f} s",
                              flush=True)
                        warmed.add(label)
                except (ImportError, RuntimeError, RemasterError) as exc:
                    print(f"# {side} {label}: unavailable: {str(exc)[:200]}", flush=True)
                    continue
                gc.collect()
                reset_peak_rss()
                if dev == "cuda":
                    if runner == "eager":
                        timed(loaded, image[:64, :64], dev, dtype, cl, tile)  # cuDNN picks its kernels
                    torch.cuda.reset_peak_memory_stats()
                try:
                    seconds, inside, out = timed(loaded, image, dev, dtype, cl, tile, runner.startswith("compiled"))
                except RuntimeError as exc:
                    print(f"# {side} {label}: failed: {str(exc)[:200]}", flush=True)
                    continue
                memory = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else peak_rss_mb()
                reference = outputs.get(settings(device)[0][0], out)
                print(f"# {side} {label}: {seconds:.3f} s ({inside:.3f} s in the network), "
                      f"{psnr(out, reference):.1f} dB to the first row", flush=True)
                peaks[label] = max(peaks.get(label, 0), memory)
                if seconds < best.get(label, float("inf")):
                    best[label], network[label] = seconds, inside
                outputs[label] = out
        reference = settings(device)[0][0]
        for label, dev, dtype, _, _, runner in settings(device, extra):
            if label not in best:
                continue
            s = best[label]
            gflops = per_pixel * side * side / s / 1e9
            share = "-" if runner.startswith("int8") else f"{100 * gflops / ceilings[(dev, dtype)]:.0f}%"
            quality = psnr(outputs[label], outputs[reference])
            rows.append(f"| {side} | {label} | {s:.3f} | {network[label]:.3f} | {side * side / s / 1e6:.4f} | "
                        f"{gflops:.0f} | {share} | {best[reference] / s:.2f}x | {quality:.1f} dB | "
                        f"{peaks[label]:.0f} |")
    print(f"\n{header}\n" + "| --- " * (header.count("|") - 1) + "|")
    print("\n".join(rows))
    sys.stdout.flush()


def default_path(store: ModelStore, device: str, sizes: list[int], backend: str = "auto") -> None:
    """The product's own path (registry, runtime choice, tiling), as the web app calls it."""
    from esrgan.io.imageio import DecodedImage, encode
    from esrgan.pipeline import Upscaler
    from esrgan.settings import Settings

    upscaler = Upscaler(store, Settings(device=device, backend=backend))
    started = time.perf_counter()
    made = upscaler.upscale(DecodedImage(crop(64)), 4).provenance  # loads, and compiles for --backend compiled
    first = time.perf_counter() - started
    print(f"\nProduct path (Upscaler.upscale, x4plus at 4x, {made.precision} {made.backend}, "
          f"--backend {backend}, tile {upscaler.tile_options().tile}; first call {first:.1f} s):\n")
    print("| size | decoded image in host memory -> result in host memory, s (best of 3) | result | PNG encode s "
          "(timed apart) | tiles | PSNR to the official fp32 path |")
    print("| --- | --- | --- | --- | --- | --- |")
    official = store.load("realesrgan-x4plus", device, torch.float32, False).module
    for side in sizes:
        image = DecodedImage(crop(side))
        upscaler.upscale(image, 4)
        best = float("inf")
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            result = upscaler.upscale(image, 4)
            best = min(best, time.perf_counter() - started)
        started = time.perf_counter()
        encode(result.image, "png")
        encoded = time.perf_counter() - started
        _, _, reference = timed(official, image.rgb(), device, torch.float32, False, 0)
        print(f"| {side} | {best:.3f} | {result.image.pixels.dtype} | {encoded:.3f} | {result.provenance.tiles} | "
              f"{psnr(result.image.pixels, reference):.1f} dB |", flush=True)


AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}  # an AVX2-only CPU, simulated


def cli_end_to_end(side: int = 256, device: str = "cpu", compiled: bool = False, rounds: int = 2) -> None:
    """The whole command, as a user runs it: reference settings against the defaults, natively and
    (CPU) with torch and oneDNN held to AVX2, as on a CPU without AVX-512 or native bf16."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "photo.png"
        Image.fromarray((crop(side) * 255).round().astype(np.uint8)).save(source)
        official = ["--backend", "torch", "--fp32", "--tile", "0"]
        runs = {"official path (--backend torch --fp32 --tile 0)": (official, {}),
                "default (auto)": ([], {})}
        if compiled:
            runs["--backend compiled"] = (["--backend", "compiled"], {})
        if device == "cpu" and torch.backends.cpu.get_cpu_capability() != "AVX2":  # else the same runs again
            runs["official path, AVX2 kernels only"] = (runs[next(iter(runs))][0], AVX2_ENV)
            runs["default (auto), AVX2 kernels only"] = ([], AVX2_ENV)
        times, outputs = {}, {}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        for _ in range(rounds):
            for label, (extra, isa) in runs.items():
                target = Path(folder) / f"{len(outputs)}-{abs(hash(label))}.png"
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "esrgan", "upscale", str(source), "-s", "4", "-o", str(target),
                                "--device", device, *extra], check=True, env={**env, **isa}, cwd=ROOT,
                               capture_output=True)
                seconds = time.perf_counter() - started
                times[label] = min(times.get(label, float("inf")), seconds)
                outputs[label] = np.asarray(Image.open(target), np.float32) / 255
                print(f"# CLI {label}: {seconds:.2f} s, {psnr(outputs[label], outputs[next(iter(runs))]):.1f} dB "
                      "to the official path", flush=True)
        reference = next(iter(runs))
        print(f"\nCLI end to end, {side}x{side} photo at 4x on {device} (best of {rounds}, process start to file "
              "written):\n")
        print("| command | seconds | vs official | PSNR to official |")
        print("| --- | --- | --- | --- |")
        for label in runs:
            print(f"| {label} | {times[label]:.2f} | {times[reference] / times[label]:.2f}x | "
                  f"{psnr(outputs[label], outputs[reference]):.1f} dB |")


def big_memory(side: int = 2048) -> None:
    """Peak RSS of a 2048x2048 input at 4x through the CLI (the output alone is 805 MB in float32)."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "big.png"
        Image.fromarray((np.tile(crop(512), (side // 512, side // 512, 1)) * 255).astype(np.uint8)).save(source)
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "esrgan", "upscale", str(source), "-s", "4",
                               "-o", str(Path(folder) / "out.png"), "--device", "cpu"],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, text=True)
        peak = next(int(line.split()[-1]) for line in done.stderr.splitlines() if "Maximum resident" in line)
        canvas = 3 * (side * 4) ** 2 * 4 / 2**20
        seconds = time.perf_counter() - started
        print(f"\n{side}x{side} at 4x via the CLI: {seconds:.0f} s, peak RSS {peak / 1024:.0f} MB "
              f"(float32 output canvas {canvas:.0f} MB; budget canvas + 1536 MB = {canvas + 1536:.0f} MB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs (tables, --cli, --split)")
    parser.add_argument("--models", default="realesrgan-x4plus,realesr-animevideov3")
    parser.add_argument("--cli", action="store_true", help="also time the CLI end to end")
    parser.add_argument("--split", action="store_true",
                        help="also the fixed-cost split of a one-image CLI run (bench/fixed_costs.py)")
    parser.add_argument("--big", action="store_true", help="also the 2048x2048 memory run (minutes)")
    parser.add_argument("--compiled", action="store_true", help="also the torch.compile rows (compiles first)")
    parser.add_argument("--int8", action="store_true",
                        help="also the int8 ONNX Runtime row (built from dataset crops on first use)")
    parser.add_argument("--only-extra", action="store_true",
                        help="time only the reference row and the --compiled / --int8 rows")
    parser.add_argument("--vulkan", action="store_true",
                        help="also the ncnn rows on every Vulkan device (Mesa's lavapipe runs on the CPU: slow)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--default-path", default="", help="sizes to time through Upscaler, e.g. 256,1024")
    args = parser.parse_args()
    device = args.device
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"# {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CPU kernels {torch.backends.cpu.get_cpu_capability()}"
          + (f", GPU {torch.cuda.get_device_name()} (TF32 convolutions: {torch.backends.cudnn.allow_tf32})"
             if device == "cuda" else ""))
    store = ModelStore()
    extra = tuple(name for name in ("compiled", "int8", "only_extra", "vulkan") if getattr(args, name))
    extra = tuple(name.replace("_", "-") for name in extra)
    models = list(filter(None, args.models.split(",")))
    if args.int8:
        import int8  # bench/int8.py: research code, beside this script

        for model in models:
            for recipe in int8.RECIPES:
                if not int8.onnx_path(store.weights_dir, model, recipe=recipe).is_file():
                    int8.build_int8(store, model, calibration_crops(), recipe)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for model in models if sizes else ():  # --sizes "": only the --cli / --split parts
        model_table(store, sizes, args.rounds, device, model, extra)
    if args.default_path:
        for backend in ("auto", "compiled") if args.compiled else ("auto",):
            default_path(store, device, [int(v) for v in args.default_path.split(",")], backend)
    if args.split:  # first: the shorter of the two
        from fixed_costs import split  # bench/ is this script's folder

        split(256, args.rounds, crop)
    if args.cli:
        cli_end_to_end(device=device, compiled=args.compiled, rounds=args.rounds)
    if args.big:
        big_memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
