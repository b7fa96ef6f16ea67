"""Shared fixtures: real weights (converted once per session) and real images kept in tests/data.

The suite needs nothing beside the repository: its images are small crops of public-domain and CC0
photographs (provenance in tests/data/README.md). Tests written against the Set5/Set14 benchmark
names keep them: `dataset_image` maps each name to a file here of a similar character.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrgan.io.imageio import as_float, read_image
from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.runtime.choose import machine_key
from esrgan.runtime.per_model import PRECISION_FILE, ModelChoices, ModelFigures, model_candidates
from esrgan.settings import Settings
from tests.hooks import SLOWDOWN_VARIABLE, Hooks, install

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
# Only the tests that reproduce published benchmark figures read the benchmarks themselves, and only
# when this names a folder holding Set5/, Set14/ and their *_LRx4/ (they skip, saying so, otherwise).
DATASETS: Path | None = Path(os.environ["REMASTER_DATASETS"]) if os.environ.get("REMASTER_DATASETS") else None

# Benchmark name a test uses -> the file in tests/data that stands in for it, of a similar character.
IMAGES = {
    "Set5/baby.png": "astronaut.png",  # a portrait: skin, hair, smooth backdrop
    "Set5/bird.png": "coffee.png",  # a clean, colourful object
    "Set5/butterfly.png": "astronaut_badge.png",  # saturated colours, hard edges
    "Set5/head.png": "chelsea_head.png",  # a face close up
    "Set14/baboon.png": "chelsea_fur.png",  # fine fur texture
    "Set14/bridge.png": "camera.png",  # 8-bit grayscale
    "Set14/comic.png": "line_art.png",  # flat colours, black outlines (drawn)
    "Set14/zebra.png": "rocket.png",  # thin regular structure
    "Set5_LRx4/babyx4.png": "astronaut_lr4.png",  # low-resolution photos (MATLAB bicubic reductions)
    "Set14_LRx4/baboonx4.png": "chelsea_lr3.png",
    "Set14_LRx4/zebrax4.png": "rocket_lr4.png",
}

FINISHED = ("done", "failed", "cancelled")  # a job's statuses once it has ended

# One torch thread per core: under pytest-xdist each worker takes its share of the cores, since a
# second OpenMP thread on a core that the other worker (or a process it started) holds turns each
# small operator into a wait for the scheduler (a tiny network's tiled run: 0.35 s alone, 29 s so).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // WORKERS)))

# TEST_STEP_SLOWDOWN=5 runs the suite with every network 5 times slower, as on a slower machine: every
# progress step of every tiled run takes five times its work (`tests.hooks`), in this process from
# here on, and in every app and worker a test starts through ``tests/launch.py`` (the variable is
# inherited; the launcher reads it). A verdict that changes under it depended on the machine's speed.
SUITE_HOOKS = Hooks(slowdown=float(os.environ.get(SLOWDOWN_VARIABLE) or 1))
if SUITE_HOOKS.active:
    install(SUITE_HOOKS)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, seconds: float, what: str):
    """Poll ``condition()`` until it returns something true, and return that; fail saying ``what``
    after ``seconds`` (a guard against waiting for ever, never a verdict on speed)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def dataset_image(relative: str) -> Path:
    """A test image: a file name in tests/data, or a benchmark name listed in `IMAGES`."""
    path = DATA / IMAGES.get(relative, relative)
    if not path.is_file():
        raise FileNotFoundError(f"no test image {relative!r} in {DATA}: add it there (see its README.md) "
                                "or map the name in tests/conftest.py IMAGES")
    return path


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def store(weights_dir) -> ModelStore:
    return ModelStore(weights_dir)


@pytest.fixture(scope="session")
def upscaler(store) -> Upscaler:
    return Upscaler(store, Settings(device="cpu", precision="fp32"))


@pytest.fixture(scope="session")
def small_photo() -> np.ndarray:
    """A 32x40 crop of a real low-resolution photo (a face), (H, W, 3) float32 in [0, 1]."""
    return read_image(dataset_image("astronaut_lr4.png")).pixels[20:52, 30:70]


def record_figures(store: ModelStore, model: str, fastest: str) -> ModelFigures:
    """Keep figures for ``model`` in ``store``'s weights folder as if this machine had measured them
    (`esrgan.runtime.per_model`): every candidate it has here faithful, ``fastest`` 4x faster than the
    others, so the engine runs it that way without measuring anything."""
    candidates = model_candidates(store, model)
    assert fastest in candidates, f"{model} has no {fastest} here ({candidates})"
    figures = ModelFigures(store.key(model).text, machine_key(), {name: 0.25 if name == fastest else 1.0
                                                                  for name in candidates},
                           {name: 60.0 for name in candidates if name != "fp32"}, 0.0)
    ModelChoices(store.weights_dir / "converted" / PRECISION_FILE).file.put(store.key(model), asdict(figures))
    return figures


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def crop_of(relative: str, box: tuple[int, int, int, int], mode: str = "RGB") -> Image.Image:
    """A crop of a test image (see `dataset_image`) in ``mode``; a box past the edge is padded black."""
    with Image.open(dataset_image(relative)) as image:
        return image.convert(mode).crop(box)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of pixels in [0, 1] (uint8 ones, an 8-bit result, read as 0..255 / 255)."""
    a, b = as_float(a), as_float(b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def get(client, url: str):
    """GET through a Flask test client and read the whole body, closing the served file (pytest
    turns a file left open into an error)."""
    response = client.get(url)
    response.get_data()
    response.close()
    return response


def job_finished(client, job_id: str, seconds: float = 120) -> dict:
    """The job's view (``GET /api/jobs/<id>``) once it has ended: done, failed or cancelled."""
    return wait_until(lambda: (lambda view: view if view["status"] in FINISHED else None)(
        client.get(f"/api/jobs/{job_id}").get_json()), seconds, f"job {job_id} did not finish")


@pytest.fixture
def make_app(tmp_path, weights_dir):
    """Build an app on temporary folders; extra config as keyword arguments. It runs on the CPU in
    fp32 unless a test says otherwise (``PRECISION="auto"``), so that no app a test starts measures
    the CPU or a model first (`esrgan.runtime.choose`, `esrgan.runtime.per_model`)."""
    from web import create_app

    apps = []

    def build(**config):
        app = create_app({
            "TESTING": True, "UPLOAD_FOLDER": str(tmp_path / "uploads"), "WEIGHTS_FOLDER": str(weights_dir),
            "PRELOAD_MODELS": False, "DEVICE": "cpu", "PRECISION": "fp32", "MAX_CONTENT_LENGTH": 4 * 2**20,
            **config,
        })
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["remaster"].close()


@pytest.fixture
def engine_hooks():
    """Hooks for this test's tiled runs, in this process (`tests.hooks.Hooks`'s fields as keyword
    arguments: ``engine_hooks(delay=0.1)``); undone when the test ends."""
    undo = []

    def apply(**fields) -> Hooks:
        hooks = Hooks(**fields)
        undo.append(install(hooks))
        return hooks

    yield apply
    for uninstall in reversed(undo):
        uninstall()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


# A real browser: Debian's Chromium driven by Playwright, against the app served by waitress.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without these, Chromium tries to reach Google's services, which this network refuses.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def serve(make_app):
    """Serve an app built with the given config over waitress, configured exactly as ``python app.py``
    configures it; returns its base URL."""
    from waitress.server import create_server

    from web.http.serving import waitress_options

    servers = []

    def start(**config):
        app = make_app(**{"MAX_CONTENT_LENGTH": 8 * 2**20, **config})
        wsgi = create_server(app, host="127.0.0.1", port=0, **waitress_options(app.config))
        thread = threading.Thread(target=wsgi.run, name="waitress", daemon=True)
        thread.start()
        servers.append((wsgi, thread))
        return f"http://127.0.0.1:{wsgi.effective_port}"

    yield start
    for wsgi, thread in servers:
        wsgi.task_dispatcher.shutdown()
        wsgi.close()
        thread.join(timeout=5)


@pytest.fixture
def server(serve):
    return serve()


@pytest.fixture
def browser():
    """Debian's Chromium, launched by Playwright (skips where either is missing)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page of its own browser context, downloads allowed, at a desktop size."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 1000})
    yield context.new_page()
    context.close()


# The modules that take longest in one process (their tests' seconds added up on the project's
# 2-core machine), longest first. On two workers (.ci/run) whole modules go to whichever worker is
# free, in this order, so the short ones come last and both workers end together.
LONGEST_FIRST = ("test_docs", "test_distributed", "test_cli", "test_faces_options", "test_restart", "test_page_jobs",
                 "test_page_first_minute", "test_first_imports", "test_video_distributed", "test_compiled",
                 "test_compare", "test_video_page", "test_train", "test_ncnn", "test_video_restart", "test_tiling")


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: a module keeps its own order
