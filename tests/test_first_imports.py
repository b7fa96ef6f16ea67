"""The first minute of a process: threads that import the same libraries for the first time at once
(spandrel for Real-CUGAN, the face step and the listing) all succeed, in the engine and in the real
``python app.py`` hit the moment it answers, first start and restarts alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from esrgan.errors import RemasterError
from esrgan.models.registry import ROUTES
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.runtime.choose import Calibration
from esrgan.settings import Settings
from tests.conftest import ROOT
from tests.test_restart import free_port

INTERPRETERS = 4  # without the lock, all of the first 4 failed
AT_ONCE = 4  # interpreters started together (each runs its own 4 threads)

# Four threads released together by a barrier, each doing a first use that imports spandrel (or
# the face step) in its own way: the face option (it reads the checkpoints in the weights folder),
# a Real-CUGAN upscale, the models listing, a waifu2x CUnet upscale (spandrel's U-Nets).
RACE = """
import sys, threading
from pathlib import Path
import numpy as np
from esrgan.io.imageio import DecodedImage
from esrgan.listing import models_listing
from esrgan.errors import RemasterError
from esrgan.models.registry import ROUTES
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.runtime.choose import Calibration
from esrgan.settings import Settings
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings

upscaler = Upscaler(ModelStore(Path(sys.argv[1])), Settings(device="cpu", precision="fp32"))
image = DecodedImage(np.random.default_rng(0).random((9, 11, 3), dtype=np.float32))
uses = {
    "faces": lambda: upscaler.faces.unavailable_reason(),
    "real-cugan": lambda: upscaler.upscale(image, 2, anime=True, model="realcugan-x2-no-denoise"),
    "listing": lambda: models_listing(upscaler),
    "cunet": lambda: upscaler.upscale(image, 1, model="waifu2x-cunet-x1-noise0"),
}
barrier = threading.Barrier(len(uses))
failures = []

def first_use(name):
    barrier.wait()
    try:
        uses[name]()
    except BaseException as exc:
        failures.append(f"{name}: {exc!r}")

threads = [threading.Thread(target=first_use, args=(name,)) for name in uses]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("failures:", failures)
sys.exit(1 if failures else 0)
"""


def race_folder(tmp_path):
    """A weights folder with the two networks converted already: the race is in the imports, not
    the conversion. No checkpoint of the user's: reading one would import spandrel's top package
    first in every thread, the one order that never raced."""
    folder = tmp_path / "weights"
    store = ModelStore(folder)
    for name in ("realcugan-x2-no-denoise", "waifu2x-cunet-x1-noise0"):
        store.state_dict(name)
    return folder


def test_threads_doing_their_first_imports_at_once_never_fail(tmp_path):
    folder = race_folder(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    for start in range(0, INTERPRETERS, AT_ONCE):
        runs = [subprocess.Popen([sys.executable, "-c", RACE, str(folder)], cwd=ROOT, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(AT_ONCE)]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
        failed = [output for run, output in zip(runs, outputs, strict=True) if run.returncode != 0]
        assert not failed, f"{len(failed)} of interpreters {start + 1}-{start + AT_ONCE} failed:\n{failed[0][-2000:]}"


STARTS = 3  # a first start, then restarts on a warm folder (the 500 came at the second start)
FIRST_REQUESTS = ("/", "/api/models", "/", "/api/models")


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def installed_weights(folder, env: dict) -> None:
    """A weights folder as a first run leaves it: the models the start preloads converted, and the
    CPU's calibration recorded (fp32, as a CPU without native bf16 records it), so that a restart's
    preload goes straight to loading them, spandrel's Real-CUGAN among them."""
    store = ModelStore(folder)
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32"))
    for scale, anime, noise in ROUTES:
        if noise == "none":
            try:
                store.state_dict(upscaler.plan(scale, anime, noise=noise).model)
            except RemasterError:
                continue
    probe = "from esrgan.runtime.choose import machine_key; print(machine_key())"  # as the app's process sees it
    machine = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True, timeout=300).stdout.strip()
    record = Calibration(machine, 1.0, None, None, "fp32", 1, time.time())
    (folder / "converted" / "calibration.json").write_text(json.dumps(asdict(record)))


def test_the_first_requests_to_a_fresh_app_all_succeed(tmp_path):
    """``python app.py`` as a new user starts it (models preloaded in the background), then as it
    restarts (its weights converted and its CPU measured: the preload builds Real-CUGAN at once);
    four requests at once the moment ``/healthz`` answers, each time on a fresh upload folder."""
    installed = tmp_path / "installed-weights"
    for start in range(STARTS):
        uploads, weights = tmp_path / f"uploads{start}", tmp_path / f"weights{start}"
        uploads.mkdir()
        port = free_port()
        env = {**os.environ, "PORT": str(port), "REMASTER_UPLOAD_FOLDER": str(uploads)}
        if start == 0:
            weights.mkdir()
        else:
            weights = installed
            if not installed.exists():
                installed_weights(installed, env)
        env["REMASTER_WEIGHTS_FOLDER"] = str(weights)
        log_path = tmp_path / f"app{start}.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the server did not start"
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                        break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.05)
            with ThreadPoolExecutor(len(FIRST_REQUESTS)) as pool:
                statuses = list(pool.map(get_status, [base + path for path in FIRST_REQUESTS]))
        finally:
            server.terminate()
            server.wait(timeout=60)
        log_text = log_path.read_text()
        assert statuses == [200] * len(FIRST_REQUESTS), f"start {start}: {statuses}\n{log_text[-3000:]}"
        assert "Traceback" not in log_text, log_text[-3000:]
