"""Where the seconds of a one-image CLI run go: interpreter, imports, model load, network, encode, exit.

Runs itself as a child process that does what ``python -m esrgan upscale img.png -s 4 -o out.png``
does (leaving by its quick exit, `esrgan.__main__.quick_exit`), stage by stage with wall-clock
stamps (epoch seconds, comparable across processes), and sets the sum beside the real command timed
as a whole. The same child then times, outside the sum, the
parts of the model load and what the cuts we would make instead cost, so each cut's saving is
measured, not guessed. Best of ``rounds`` per stage (load from other processes only adds time).

    python bench/fixed_costs.py [--side 256] [--rounds 2]
"""

import time

STARTED = time.time()  # the first statement: what came before it is the interpreter's own start

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = "realesrgan-x4plus"
STAGES = ("interpreter start", "import torch", "our imports", "model load (runtime record, safetensors, build)",
          "decode", "network (upscale, tiles)", "encode + write PNG", "exit")


def child(source: str, target: str, launched: float) -> None:
    """The CLI's work, stage by stage; prints one JSON line of stamps and measured alternatives."""
    stamps = {"launched": launched, "started": STARTED}

    stamps["torch"] = time.time()
    from esrgan.cli import main as cli  # noqa: F401  what ``python -m esrgan`` imports before parsing
    from esrgan.io.imageio import read_image, write_image
    from esrgan.models.store import ModelStore
    from esrgan.pipeline import Upscaler
    from esrgan.settings import Settings

    stamps["ours"] = time.time()
    upscaler = Upscaler(ModelStore(), Settings(device="cpu"))
    upscaler.load(MODEL)  # what upscale() would do first: runtime record, read, build, place
    stamps["load"] = time.time()
    image = read_image(source)
    stamps["decode"] = time.time()
    result = upscaler.upscale(image, 4)
    stamps["network"] = time.time()
    write_image(target, result.image, "png")
    stamps["encode"] = time.time()
    runtime = upscaler.runtime
    print(json.dumps({"stamps": stamps, "parts": load_parts(upscaler.store, runtime.dtype, runtime.channels_last),
                      "runtime": f"{result.provenance.precision} {result.provenance.backend}",
                      "tiles": result.provenance.tiles}),
          flush=True)
    stamps["end"] = time.time()
    print(json.dumps({"end": stamps["end"]}), flush=True)
    from esrgan.__main__ import quick_exit

    quick_exit(0)  # as ``python -m esrgan upscale`` leaves


def load_parts(store, dtype, channels_last: bool) -> dict[str, float]:
    """Seconds of each part of the model load as it was, as it is (stamps, meta build) and as a
    memory-mapped read would make it."""
    import torch
    from safetensors.torch import load_file

    from esrgan.models import detect, registry
    from esrgan.models.catalogue import _sha256
    from esrgan.models.store import place as weights_place

    spec = registry.spec(MODEL)
    cache = store.converted_path(spec)
    source = store.conversions.ncnn_pair(spec)[1]
    parts: dict[str, float] = {}

    def clock(name, call):
        started = time.perf_counter()
        value = call()
        parts[name] = time.perf_counter() - started
        return value

    clock("was: sha256 of the shipped .bin", lambda: _sha256(source))
    clock("was: sha256 of the safetensors cache", lambda: _sha256(cache))
    clock("now: the cache read (stamps checked, no hash) + load_file", lambda: store.state_dict(MODEL))
    state = clock("safetensors load_file (copies)", lambda: load_file(str(cache)))
    found = detect.detect(state)
    module = clock("was: build the network (random init)", found.build)
    clock("was: load_state_dict (copies)", lambda: module.load_state_dict(state, strict=True))
    clock("now: load_file + detect.load (meta build, tensors assigned)", lambda: detect.load(load_file(str(cache))))
    assigned = detect.load(load_file(str(cache)))[0]
    clock("was: to dtype / channels-last (module.to)", lambda: place(module, dtype, channels_last))
    clock("now: esrgan.models.store.place (copies below the parallel grain)",
          lambda: weights_place(assigned, torch.device("cpu"), dtype, channels_last))

    def cheaper():
        mapped = mapped_state(cache)
        with torch.device("meta"):
            net = found.build()
        net.load_state_dict(mapped, strict=True, assign=True)
        return place(net, dtype, channels_last)

    clock("not done: mmap + meta build + assign + placing", cheaper)
    return parts


def place(module, dtype, channels_last: bool):
    import torch

    module = module.to(dtype=dtype).eval().requires_grad_(False)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def mapped_state(path: Path) -> dict:
    """The safetensors file's tensors as views of one read-only memory map (no copy until used)."""
    import mmap
    import warnings

    import torch

    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    with open(path, "rb") as handle:
        memory = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    length = int.from_bytes(memory[:8], "little")
    header = json.loads(memory[8 : 8 + length])
    base = 8 + length
    buffer = memoryview(memory)
    state = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = dtypes[info["dtype"]]
        count = (end - begin) // torch.tensor([], dtype=dtype).element_size()
        with warnings.catch_warnings():  # read-only map: the weights are never written in place
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.frombuffer(buffer, dtype=dtype, count=count, offset=base + begin)
        state[name] = flat.view(info["shape"])
    return state


def run_child(source: Path, target: Path, env: dict) -> dict:
    launched = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", str(source), str(target), repr(launched)],
                          check=True, env=env, cwd=ROOT, capture_output=True, text=True)
    exited = time.time()
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    report, end = lines[0], lines[1]["end"]
    s = report["stamps"]
    seconds = [s["started"] - s["launched"], s["torch"] - s["started"], s["ours"] - s["torch"],
               s["load"] - s["ours"], s["decode"] - s["load"], s["network"] - s["decode"],
               s["encode"] - s["network"], exited - end]
    return {"stages": dict(zip(STAGES, seconds, strict=True)), "parts": report["parts"],
            "runtime": report["runtime"], "tiles": report["tiles"]}


def time_command(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, env=env, cwd=ROOT, capture_output=True)
    return time.perf_counter() - started


def import_costs(env: dict, top: int = 6) -> list[tuple[str, float]]:
    """The heaviest packages ``import esrgan.cli.main`` pulls in beside torch (``-X importtime``,
    cumulative seconds, one run; importtime's own overhead included)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import torch; import esrgan.cli.main"],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    costs: dict[str, float] = {}
    after_torch = False
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name, seconds = fields[2].strip(), int(fields[1]) / 1e6
        if name == "torch" and fields[2].startswith(" torch"):
            after_torch = True  # children are listed before their parent: what follows is ours
        elif after_torch and (name == "esrgan.cli.main" or (not name.startswith("esrgan") and "." not in name)):
            costs.setdefault(name, seconds)
    return sorted(costs.items(), key=lambda item: -item[1])[:top]


def imports_child(fast_exit: bool) -> None:
    """``import torch``, then the CLI's imports, then spandrel (which only a Real-CUGAN, waifu2x CUnet
    or spandrel-only model imports, on first use); stamps each, then leaves normally or by ``os._exit``."""
    stamps = {"started": STARTED}
    import torch  # noqa: F401

    stamps["torch"] = time.time()
    from esrgan.cli import main as cli  # noqa: F401

    stamps["ours"] = time.time()
    import spandrel  # noqa: F401

    stamps["spandrel"] = stamps["end"] = time.time()
    print(json.dumps(stamps), flush=True)
    if fast_exit:
        os._exit(0)


def imports_and_exit(env: dict, rounds: int) -> dict[str, float]:
    """Best-of-``rounds`` seconds: our imports, spandrel's (no longer among them), and the interpreter's
    exit after them, normal and by ``os._exit``."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for fast in (False, True):
            done = subprocess.run([sys.executable, __file__, "--imports-child", str(int(fast))], check=True, env=env,
                                  cwd=ROOT, capture_output=True, text=True)
            exited = time.time()
            s = json.loads(done.stdout.splitlines()[-1])
            found = {"our imports (esrgan.cli.main, after torch)": s["ours"] - s["torch"],
                     "import spandrel (Real-CUGAN and spandrel models only, on first use)": s["spandrel"] - s["ours"],
                     f"exit ({'os._exit' if fast else 'normal'})": exited - s["end"]}
            for name, seconds in found.items():
                best[name] = min(best.get(name, float("inf")), seconds)
    return best


def split(side: int = 256, rounds: int = 2, photo=None) -> None:
    """Print the split of a one-image CLI run at 4x (a ``side`` x ``side`` photo) and the cuts' savings."""
    import tempfile

    import numpy as np
    from PIL import Image

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "photo.png", Path(folder) / "out.png"
        Image.fromarray((photo(side) * 255).round().astype(np.uint8)).save(source)
        cli = [sys.executable, "-m", "esrgan", "upscale", str(source), "-s", "4", "-o", str(target), "--device", "cpu"]
        subprocess.run(cli, check=True, env=env, cwd=ROOT, capture_output=True)  # converts / calibrates once, untimed
        runs, whole, bare = [], float("inf"), float("inf")
        for _ in range(rounds):  # interleaved: the real command, the staged child, a bare interpreter
            whole = min(whole, time_command(cli, env))
            runs.append(run_child(source, Path(folder) / "staged.png", env))
            bare = min(bare, time_command([sys.executable, "-c", "pass"], env))
        imports = import_costs(env)
        cuts = imports_and_exit(env, rounds)
    best = {name: min(run["stages"][name] for run in runs) for name in STAGES}
    parts = {name: min(run["parts"][name] for run in runs) for name in runs[0]["parts"]}
    total = sum(best.values())
    print(f"\nFixed costs of one CLI run, {side}x{side} photo at 4x on the CPU ({runs[0]['runtime']}, "
          f"{runs[0]['tiles']} tile(s); best of {rounds} per stage):\n")
    print("| stage | seconds | share |")
    print("| --- | --- | --- |")
    for name in STAGES:
        print(f"| {name} | {best[name]:.2f} | {100 * best[name] / total:.0f}% |")
    print(f"| sum of the stages | {total:.2f} | |")
    print(f"| the real command, timed whole (best of {rounds}) | {whole:.2f} | |")
    print(f"| (a bare `python -c pass`) | {bare:.2f} | |")
    print("\nModel load, its parts (timed again after the run, page cache warm):\n")
    print("| part | seconds |")
    print("| --- | --- |")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.3f} |")
    print("\nImports and exit, measured in a process that only imports (best of each):\n")
    print("| part | seconds |")
    print("| --- | --- |")
    for name, seconds in cuts.items():
        print(f"| {name} | {seconds:.3f} |")
    print("\nHeaviest imports after torch (`-X importtime`, cumulative, one run):\n")
    print("| module | seconds |")
    print("| --- | --- |")
    for name, seconds in imports:
        print(f"| {name} | {seconds:.3f} |")
    sys.stdout.flush()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--imports-child":
        sys.path.insert(0, str(ROOT))
        imports_child(bool(int(sys.argv[2])))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return 0
    # The split is run by bench/speed.py, which owns the timed photo (one import direction only).
    print('run: python bench/speed.py --sizes "" --split', file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
