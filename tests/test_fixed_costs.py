"""Fixed costs of a one-image CLI run: what it imports, how it leaves, how it loads its weights."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from esrgan import archs
from esrgan.archs import RRDBNet, SRVGGNetCompact
from esrgan.archs.base import Architecture, ModelDescriptor
from esrgan.archs.waifu2x import UpConv7
from esrgan.errors import WeightsError
from esrgan.models import catalogue, registry
from esrgan.models.detect import load
from esrgan.models.store import ALIGNMENT, PARALLEL_GRAIN, ModelStore, place
from tests.conftest import ROOT, crop_of, psnr


def run_python(code: str, *args: str, weights_dir) -> subprocess.CompletedProcess:
    """``python -c code args...`` in a fresh process, as a user's shell would start it."""
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_importing_the_cli_imports_no_spandrel(weights_dir):
    done = run_python("import sys, esrgan.cli.main; print(sorted(m for m in sys.modules if m.startswith('spandrel')))",
                      weights_dir=weights_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_x4plus_cli_run_imports_no_spandrel_and_a_real_cugan_one_does(tmp_path, weights_dir):
    source = tmp_path / "in.png"
    crop_of("coffee.png", (80, 80, 97, 94)).save(source)  # 17x14: odd sides
    code = ("import sys; from esrgan.cli.main import main; code = main(sys.argv[1:]); "
            "print(code, any(m.startswith('spandrel') for m in sys.modules))")
    for extra, imported in (((), False), (("--anime", "-s", "2"), True)):
        target = tmp_path / f"out{len(extra)}.png"
        done = run_python(code, "upscale", str(source), "-o", str(target), "--device", "cpu", *extra,
                          weights_dir=weights_dir)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == f"0 {imported}"
        assert target.is_file()


# A one-shot command as ``python -m esrgan`` runs it, in a process that registers an exit handler
# and keeps an object whose finaliser only the interpreter's teardown runs.
# With "thread", a thread that writes once the main thread has ended (as a late writer would).
QUICK_EXIT_PROBE = """
import atexit, os, runpy, sys, threading
class Teardown:
    def __del__(self):
        os.write(1, b"teardown ran\\n")
probe = Teardown()
atexit.register(lambda: print("exit handler ran", flush=True))
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (threading.main_thread().join(), print("thread wrote", flush=True))).start()
sys.argv = ["esrgan", *sys.argv[2:]]
runpy.run_module("esrgan", run_name="__main__")
"""


def test_a_one_shot_command_skips_the_teardown_after_exit_handlers_and_flushed_output(weights_dir):
    done = run_python(QUICK_EXIT_PROBE, "-", "models", weights_dir=weights_dir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Devices:") and "Models:" in lines and "any scale from" in done.stdout  # all of it, flushed
    assert lines[-1] == "exit handler ran" and "teardown ran" not in lines


def test_a_live_thread_gets_the_normal_exit_and_a_failed_input_keeps_its_status(tmp_path, weights_dir):
    done = run_python(QUICK_EXIT_PROBE, "thread", "models", weights_dir=weights_dir)
    assert done.returncode == 0, done.stderr
    assert {"thread wrote", "exit handler ran", "teardown ran"} <= set(done.stdout.splitlines())
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    done = run_python(QUICK_EXIT_PROBE, "-", "upscale", str(bad), "-o", str(tmp_path / "out.png"),
                      weights_dir=weights_dir)
    assert done.returncode == 1  # one failed input: the status still comes through the quick exit
    assert done.stderr.splitlines()[-1].startswith("error:") and "teardown ran" not in done.stdout


def test_converted_weights_are_hashed_once_then_known_by_their_stamp(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(catalogue, "RACY_NS", 0)  # stamps stand for content at once (else after 2 s)
    spec = registry.spec("realesr-animevideov3")
    first = ModelStore(tmp_path).state_dict(spec.name)
    cached = ModelStore(tmp_path).converted_path(spec)
    sidecar = cached.with_suffix(".sha256")
    record = json.loads(sidecar.read_text())
    assert record["stamps"]["file"][0] == cached.stat().st_size and record["stamps"]["source"] is not None
    # A recorded hash is taken on the stamp's word: a wrong one goes unnoticed while the stamp holds ...
    sidecar.write_text(json.dumps({**record, "sha256": "0" * 64}))
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(ModelStore(tmp_path).state_dict(spec.name), first)
    assert "rebuilding" not in caplog.text
    # ... and is checked as soon as the file's stamp changes (here only its modification time).
    os.utime(cached, ns=(cached.stat().st_atime_ns, cached.stat().st_mtime_ns - 10**9))
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(ModelStore(tmp_path).state_dict(spec.name), first)
    assert "checksum mismatch" in caplog.text
    caplog.clear()
    # A source whose stamp changed is hashed again; the same content keeps the cache and its new stamp is kept.
    rebuilt = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**rebuilt, "stamps": {**rebuilt["stamps"], "source": [0, 0, 0, 0]}}))
    with caplog.at_level(logging.WARNING):
        ModelStore(tmp_path).state_dict(spec.name)
    assert "rebuilding" not in caplog.text
    assert json.loads(sidecar.read_text()) == rebuilt


TINY_NETWORKS = {
    "rrdbnet": lambda: RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4, scale=4),
    "srvgg": lambda: SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4),
    "waifu2x-upconv7": UpConv7,
}


@pytest.mark.parametrize("name", TINY_NETWORKS)
def test_a_network_loaded_without_random_init_computes_exactly_what_the_built_one_does(name):
    torch.manual_seed(0)
    state = {key: tensor.clone() for key, tensor in TINY_NETWORKS[name]().state_dict().items()}
    module, found = load(state)
    reference = found.build()
    reference.load_state_dict(state, strict=True)
    assert found.arch == name and not any(t.is_meta for t in module.state_dict().values())
    assert all(p.requires_grad for p in module.parameters())  # still trainable
    image = torch.rand(1, 3, 11, 5)  # odd and thin
    with torch.inference_mode():
        ours, theirs = module.eval()(image), reference.eval()(image)
    assert psnr(ours.clamp(0, 1).numpy(), theirs.clamp(0, 1).numpy()) == float("inf")
    assert torch.equal(ours, theirs)


def test_a_half_checkpoint_loads_as_float32_and_a_wrong_one_is_refused():
    torch.manual_seed(0)
    state = TINY_NETWORKS["srvgg"]().state_dict()
    module, _ = load({key: tensor.half() for key, tensor in state.items()})
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    with pytest.raises(WeightsError, match="do not fit"):
        load({**state, "body.0.weight": state["body.0.weight"][:4]})


class Offset(nn.Module):
    """A network with a buffer that no state dict holds (it stays on the meta device if assigned)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.register_buffer("offset", torch.full((1, 3, 1, 1), 0.25), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.offset


def test_a_network_with_a_buffer_outside_its_state_dict_is_built_and_copied_into(monkeypatch):
    offset = Architecture(name="offset", family="Tiny", network=Offset, recognises=lambda s: "conv.weight" in s,
                          describe=lambda s: ModelDescriptor("offset", 1), freeze_rule=lambda a: "")
    monkeypatch.setattr(archs, "ARCHITECTURES", (offset,))
    torch.manual_seed(0)
    network = Offset()
    module, _ = load(network.state_dict())
    assert module.offset.device.type == "cpu"
    image = torch.rand(1, 3, 3, 7)
    assert torch.equal(module(image), network(image))


@pytest.mark.parametrize(("dtype", "channels_last"), [(torch.bfloat16, True), (torch.float32, True),
                                                      (torch.float32, False), (torch.bfloat16, False)])
def test_placing_on_the_cpu_piece_by_piece_gives_what_module_to_gives(dtype, channels_last):
    torch.manual_seed(0)
    network = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=1, num_grow_ch=32, scale=4)
    expected = copy.deepcopy(network).to(dtype=dtype)
    expected = expected.to(memory_format=torch.channels_last) if channels_last else expected
    placed = place(network, torch.device("cpu"), dtype, channels_last)
    pairs = list(zip(expected.state_dict().items(), placed.state_dict().items(), strict=True))
    assert max(t.numel() for t in expected.state_dict().values()) > PARALLEL_GRAIN  # pieces were cut
    for (name, want), (key, got) in pairs:
        assert key == name and got.dtype == want.dtype and got.stride() == want.stride() and torch.equal(got, want)


def test_placing_gives_weights_read_unaligned_a_buffer_of_their_own():
    torch.manual_seed(0)
    state = TINY_NETWORKS["srvgg"]().state_dict()
    shifted = {k: torch.cat([torch.zeros(1), v.flatten()])[1:].view_as(v) for k, v in state.items()}  # 4 bytes in
    module, _ = load(shifted)
    assert any(p.data_ptr() % ALIGNMENT for p in module.parameters())
    placed = place(module, torch.device("cpu"), torch.float32, False)
    assert all(t.data_ptr() % ALIGNMENT == 0 for t in placed.state_dict().values())
    assert all(torch.equal(placed.state_dict()[k], v) for k, v in state.items())
