"""decode -> pick a model -> tiled inference -> resample -> (the caller encodes). `Upscaler` is the
engine's front: stateless per call, safe to share between threads; it keeps only its `ModelStore`."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from esrgan.errors import FacesUnavailableError, ImageTooLargeError
from esrgan.io.imageio import DecodedImage
from esrgan.io.resumable import WorkStore, digest
from esrgan.models import registry
from esrgan.models.store import LoadedModel, ModelStore, resolve_device
from esrgan.result import Provenance, UpscaleResult, resample
from esrgan.runtime import compiled
from esrgan.runtime.choose import CALIBRATION_MODEL, DTYPES, Runtime, choose_runtime, needs_calibration
from esrgan.runtime.precision import PRECISION_FILE, PrecisionStore
from esrgan.runtime.rates import RATES_FILE, RateStore, flops_per_pixel, prior_rate
from esrgan.runtime.recheck import CalibrationWatch
from esrgan.settings import Settings
from esrgan.tiling.run import (
    CancelFn,
    ProgressFn,
    TileOptions,
    TilePlan,
    model_context,
    plan_for,
    run_plan,
    upscale_tiled,
)
from esrgan.tiling.steps import steps_per_tile
from esrgan.tiling.tile_size import LARGE_CANVAS_BYTES, cpu_tile, cuda_tile
from esrgan.tiling.tta import passes_for, with_tta
from esrgan.tiling.whole import approximation, tiling_for, whole_spec

if TYPE_CHECKING:
    from esrgan.faces.service import FaceRestoration

log = logging.getLogger(__name__)

StageFn = Callable[[str], None]

# The compiled backend runs one fixed shape: 512 px tiles (+ context) in batches of 4 on a GPU, so
# a small image is not padded up to a window sized for the largest.
COMPILED_CUDA_TILE = 512
SMALL_TILE_BATCH = 4  # same-shape tiles per forward pass when tiles are small on a GPU
PRECISION_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class Upscaler:
    """Upscale decoded images with the registry's choice of model.

    Args:
        store: Where models come from (and are cached once loaded); by default the settings' folder.
        settings: Weights folder, device, precision, backend, tiling and limits.
    """

    def __init__(self, store: ModelStore | None = None, settings: Settings = Settings()) -> None:
        self.store = store or ModelStore(settings.weights_folder)
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.rates = RateStore(self.store.weights_dir / "converted" / RATES_FILE)
        self.precisions = PrecisionStore(self.store.weights_dir / "converted" / PRECISION_FILE)  # per model
        self._flops: dict[str, float] = {}
        self._runtime: Runtime | None = None
        self._runtime_lock = threading.Lock()
        self.watch = CalibrationWatch()  # when the CPU is measured again (`recalibrate_if_due`)

    @cached_property
    def faces(self) -> FaceRestoration:
        """"Restore faces" with the face checkpoint in the weights folder (`esrgan.faces`); its
        ``unavailable_reason()`` says whether one is there (looked for at each call, so a file added
        later counts) and, if not, how to add one."""
        from esrgan.faces.service import FaceRestoration

        return FaceRestoration(self.store.weights_dir, str(self.device))

    @property
    def calibration_record(self) -> Path:
        """Where this store keeps the CPU calibration."""
        return self.store.weights_dir / "converted" / "calibration.json"

    @property
    def calibrated(self) -> bool:
        """Whether the runtime is known without measuring the CPU first (forced, CUDA, recorded,
        or measured already): when False, the next job starts with the one-time calibration."""
        if self._runtime is not None:
            return True
        return not needs_calibration(self.device, self.settings.precision, self.calibration_record, self.store)

    @property
    def runtime(self) -> Runtime:
        """Precision and layout: the user's, or measured on first use (then recorded).

        Raises:
            InvalidOptionError: The options name a precision or backend this device cannot run.
        """
        with self._runtime_lock:
            if self._runtime is None:
                if needs_calibration(self.device, self.settings.precision, self.calibration_record, self.store):
                    self.watch.measured()
                self._runtime = choose_runtime(self.device, self.settings.precision, self.settings.backend,
                                               self.store, self.calibration_record)
                log.info("runtime: %s %s (%s)", self._runtime.precision, self._runtime.backend, self._runtime.reason)
            return self._runtime

    def check_calibration(self, model: str, seconds: float, pixels: int) -> bool:
        """Tell the runtime choice what a finished job achieved: ``seconds`` of inference over
        ``pixels`` work pixels of ``model``. Measures nothing: several jobs in a row far slower than
        the calibration promised make a new measurement due (`esrgan.runtime.recheck`), which
        `recalibrate_if_due` makes later, off every job's path. Returns whether one is due."""
        return self.watch.observe(self._runtime, model, seconds, pixels)

    def recalibrate_if_due(self) -> bool:
        """Measure the CPU again if jobs said so and the machine is quiet (`esrgan.runtime.recheck`); for a
        runner's idle moments, in a thread no job waits on: jobs keep the old runtime until the new
        one is measured. Returns whether it measured."""
        if self.settings.precision != "auto" or self.device.type != "cpu" or not self.watch.begin():
            return False
        try:
            fresh = choose_runtime(self.device, self.settings.precision, self.settings.backend, self.store,
                                   self.calibration_record, fresh=True)
            with self._runtime_lock:
                self._runtime = fresh
            log.info("runtime measured again: %s %s (%s)", fresh.precision, fresh.backend, fresh.reason)
        finally:
            self.watch.measured()
            self.watch.end()
        return True

    def plan(self, scale: float, anime: bool = False, model: str | None = None,
             noise: str | None = "none") -> registry.Plan:
        """How a ``scale``x result (any scale from 1 to 8) would be made (which model, which resample).

        Raises UnsupportedScaleError, NoiseNotAvailableError, ModelNotFoundError."""
        entries = self.store.entries()
        if model is not None:
            entry = self.store.entry(model)
            return registry.plan(scale, anime, [*entries, model], model=model, model_scale=entry.scale,
                                 noise=noise)
        return registry.plan(scale, anime, entries, noise=noise)

    def tile_options(self, output_pixels: int = 0, model: str | None = None) -> TileOptions:
        """The tiling for a result of ``output_pixels``: on a GPU as large as half its free memory
        allows; on the CPU 384 px (fastest), smaller when the RAM left (or a huge output canvas)
        needs the room (`esrgan.tiling.tile_size`); ``model``'s own where it runs whole (`esrgan.tiling.whole`)."""
        tile = self.settings.tile
        compiling = self.settings.backend == compiled.BACKEND_NAME
        if tile is None and self.device.type == "cuda":
            tile = COMPILED_CUDA_TILE if compiling else cuda_tile(self.device, self.runtime.precision != "fp32")
        elif tile is None:
            large = output_pixels * 3 * 4 > LARGE_CANVAS_BYTES
            runtime = self.runtime if large else self._runtime  # no calibration for a small image
            bf16 = runtime is not None and runtime.precision == "bf16"
            tile = cpu_tile(output_pixels, self.settings.tile_pad, bf16)
        small = self.device.type == "cuda" and 0 < tile <= 512
        return tiling_for(TileOptions(tile=tile, tile_pad=self.settings.tile_pad, pre_pad=self.settings.pre_pad,
                           batch=SMALL_TILE_BATCH if small else 1, fixed_window=compiling,
                           se_sync=self.settings.se_sync, step_delay=self.settings.step_delay,
                           step_slowdown=self.settings.step_slowdown, oom_at_tile=self.settings.oom_at_tile),
                          model, output_pixels)

    def load(self, model: str, measure_precision: bool = False) -> LoadedModel:
        """The model ready to run in its own precision (`esrgan.runtime.precision`); ``measure_precision``:
        measure a model this CPU has no bf16 figures for now (runs do, estimates do not)."""
        runtime = self.runtime
        automatic = self.settings.precision == "auto" and self.device.type == "cpu"
        precision = self.precisions.choose(self.store, model, runtime.precision, automatic, measure_precision)
        precision = "bf16" if precision == "fp16" and whole_spec(self.store.entry(model).name) else precision
        return self.store.load(model, self.device, DTYPES[precision], runtime.channels_last)

    def tile_plan(self, width: int, height: int, model: str) -> TilePlan:
        """The tiles a run of ``model`` over a ``width`` x ``height`` image will cut: planned once,
        read by the estimate (`work_pixels`), the progress total and the run itself."""
        loaded = self.load(model)
        tiling = self.tile_options(width * height * loaded.entry.scale**2, loaded.entry.name)
        return plan_for(height, width, tiling, loaded.size_multiple, model_context(self._module(loaded, tiling)))

    def work_pixels(self, width: int, height: int, model: str) -> int:
        """Input-side pixels a run of ``model`` over a ``width`` x ``height`` image will really
        process: tile windows with their context, over the image padded as the model needs."""
        return self.tile_plan(width, height, model).work_pixels

    def _module(self, loaded: LoadedModel, tiling: TileOptions, tta: bool = False) -> torch.nn.Module:
        """What the tiler calls: the network (or its compiled wrapper), averaged over the 8
        symmetries when ``tta`` (`esrgan.tiling.tta`)."""
        module = compiled.module_for(loaded, tiling, self.settings.backend, self.store.weights_dir)
        return with_tta(module) if tta else module

    def estimate_seconds(self, model: str, width: int, height: int) -> float:
        """Seconds a run of ``model`` over a ``width`` x ``height`` image should take here: its rate
        (`esrgan.runtime.rates`; before any run, the calibration's scaled by FLOPs) times the pixels it
        will process, plus what the `Settings.step_delay` test hook will sleep (slow work slow on
        purpose is slow in the estimate too, as a slow machine's measured rate would be). Loads the
        model to count them."""
        rate = self.rates.get(model)
        if rate is None:
            calibrated = self.runtime.seconds_per_pixel if self.calibrated else None
            rate = prior_rate(self._model_flops(model), self.device.type, calibrated,
                              self._model_flops(CALIBRATION_MODEL) if calibrated else None)
        plan = self.tile_plan(width, height, model)
        slept = 0.0
        if self.settings.step_delay:
            loaded = self.load(model)
            tiling = self.tile_options(width * height * loaded.entry.scale**2, loaded.entry.name)
            per_tile = steps_per_tile(self._module(loaded, tiling))
            slept = self.settings.step_delay * plan.count * per_tile
        return rate * plan.work_pixels + slept

    def _model_flops(self, model: str) -> float:
        if model not in self._flops:
            loaded = self.load(model)
            self._flops[model] = flops_per_pixel(loaded.module, loaded.size_multiple)
        return self._flops[model]

    def check_output_size(self, width: int, height: int, scale: float) -> None:
        """Raise ImageTooLargeError when the result would exceed the output pixel limit."""
        out_w, out_h = registry.output_size(width, height, scale)
        pixels = out_w * out_h
        if pixels > self.settings.max_output_pixels:
            limit = self.settings.max_output_pixels
            largest = math.floor((limit / (width * height)) ** 0.5 * 100) / 100  # the largest that fits
            fix = (f"choose a scale of at most {largest:g}x" if largest >= registry.MIN_SCALE
                   else "crop or shrink the image first: even 1x is over the limit")
            raise ImageTooLargeError(
                f"a {scale:g}x result of this {width}x{height} image would be {out_w}x{out_h} "
                f"({pixels / 1e6:.1f} MP); the limit is {limit / 1e6:.1f} MP: {fix}."
            )

    def upscale(
        self,
        image: DecodedImage,
        scale: float,
        anime: bool = False,
        model: str | None = None,
        progress: ProgressFn | None = None,
        cancelled: CancelFn | None = None,
        stage: StageFn | None = None,
        noise: str | None = "none",
        checkpoint: Path | None = None,
        tta: bool = False,
        faces: bool = False,
        float_result: bool = False,
    ) -> UpscaleResult:
        """Upscale one image.

        Args:
            image: The decoded input (gray, RGB, with or without alpha; 8 or 16 bit).
            scale: Any output scale from 1 to 8 (2, 4 and 8 are the page's quick choices).
            anime: Prefer the anime model.
            model: A registry name, custom name or checkpoint path to use instead of the route.
            progress: Called with (steps done, total steps): several per tile (per RRDB block, per
                convolution of the fast model), monotonic, the last with done == total.
            cancelled: Polled at every step, inside the forward pass too; True stops the work
                with `Cancelled` within one step.
            stage: Called with ``"calibrating"`` (only when the one-time CPU measurement really
                runs now), ``"loading"`` and ``"upscaling"``.
            noise: Noise reduction, ``"none"``/``"low"``/``"medium"``/``"high"`` (the registry's route).
            checkpoint: A folder of this job's own: finished tiles are kept there, so the same call
                after a crash resumes at the first unfinished tile (`esrgan.io.resumable`); removed
                when the result is made. A folder holding another work's parts is emptied first.
            tta: Run every network of the plan on the 8 flips and transposes of its input and
                average the outputs (`esrgan.tiling.tta`): about 8x the time, progress steps included.
            faces: Then restore the faces found in the input with the face checkpoint in the weights
                folder and paste them over the result (Real-ESRGAN's ``--face_enhance``).
            float_result: Keep the result float32 even where it goes straight to 8 bits (an 8-bit
                RGB source, no resample, no faces), which otherwise comes back as uint8 made on the
                device (`esrgan.tiling.canvas`; the same bytes an encoder makes of the float result).

        Raises:
            UnsupportedScaleError, NoiseNotAvailableError, ModelNotFoundError, ImageTooLargeError,
            WeightsError, Cancelled; FacesUnavailableError (before any work: faces asked, no
            checkpoint or detector here), FaceRestorerError (the checkpoint does not load).
        """
        started = time.perf_counter()
        chosen = self.plan(scale, anime, model, noise)
        self.check_output_size(image.width, image.height, chosen.scale)
        if faces and (missing := self.faces.unavailable_reason()) is not None:
            raise FacesUnavailableError(missing)
        if stage is not None and not self.calibrated:
            stage("calibrating")
        runtime = self.runtime  # measures the CPU now if it must, before "loading"
        if stage is not None:
            stage("loading")
        loaded = self.load(chosen.model, measure_precision=True)
        if stage is not None:
            stage("upscaling")
        rgb = image.rgb()
        for name in chosen.before:  # a chain's first models (registry.Plan.before), each on the whole output
            step = self.load(name)
            step_tiling = self.tile_options(rgb.shape[0] * rgb.shape[1] * step.entry.scale**2, name)
            rgb = upscale_tiled(self._module(step, step_tiling, tta), rgb, scale=step.entry.scale,
                                size_multiple=step.size_multiple, options=step_tiling, device=step.device,
                                dtype=step.dtype, channels_last=step.channels_last, cancelled=cancelled)
        tiling = self.tile_options(rgb.shape[0] * rgb.shape[1] * loaded.entry.scale**2, loaded.entry.name)
        module = self._module(loaded, tiling, tta)
        plan = plan_for(rgb.shape[0], rgb.shape[1], tiling, loaded.size_multiple, model_context(module))
        resumable = checkpoint is not None and plan.count > 1  # one tile has nothing to resume part-way
        as_bytes = not (float_result or faces or image.bit_depth != 8 or image.has_alpha or image.is_gray
                        or chosen.resample is not None)
        store = WorkStore.open(checkpoint, self._identity(loaded, tiling, rgb, tta, as_bytes)) if resumable else None
        inference_started = time.perf_counter()
        tiled = run_plan(module, rgb, plan, scale=loaded.entry.scale, options=tiling, device=loaded.device,
                         dtype=loaded.dtype, channels_last=loaded.channels_last, progress=progress,
                         cancelled=cancelled, checkpoint=store, quantise=as_bytes)
        out, plan = tiled.image, tiled.plan
        if not tiled.resumed:  # a resumed run's time covers only part of the plan
            inference_seconds = time.perf_counter() - inference_started - tiled.slept
            work = plan.work_pixels * passes_for(tta)  # a rate is per pixel of one pass
            self.rates.learn(loaded.entry.name, inference_seconds, work)
            if loaded.device.type == "cpu":
                self.check_calibration(loaded.entry.name, inference_seconds, work)
        size = registry.output_size(image.width, image.height, chosen.scale)
        if chosen.resample is not None:
            out = resample(out, size)
        if faces:
            out = self.faces.apply(image.rgb(), out, chosen.scale)
        alpha = resample(image.alpha, size) if image.has_alpha else None
        provenance = Provenance(
            model=loaded.entry.name, model_title=loaded.entry.title, weights=loaded.entry.source,
            native_scale=chosen.native_scale, scale=chosen.scale, resample=chosen.resample,
            device=str(loaded.device), precision=PRECISION_NAMES[loaded.dtype], backend=runtime.backend,
            tiles=plan.count, seconds=round(time.perf_counter() - started, 3), tile=plan.tile,
            before=chosen.before, tta=tta, faces=faces, approximate=approximation(loaded.entry.name, plan.count),
        )
        log.info("upscaled %dx%d -> %dx%d with %s in %.1fs", image.width, image.height, *size,
                 loaded.entry.name, provenance.seconds)
        if store is not None:
            store.close()
        return UpscaleResult(image.with_rgb(out if as_bytes else np.clip(out, 0, 1, out=out), alpha), provenance)

    def _identity(self, loaded: LoadedModel, tiling: TileOptions, rgb: np.ndarray, tta: bool, as_bytes: bool) -> dict:
        """What decides a tiled run's parts (not the tile size: a resumed run keeps its own plan)."""
        return {"work": "tiles", "model": loaded.entry.name, "weights": loaded.entry.source,
                "device": loaded.device.type, "dtype": str(loaded.dtype), "channels_last": loaded.channels_last,
                "tile_pad": tiling.tile_pad, "pre_pad": tiling.pre_pad, "se_sync": tiling.se_sync,
                "backend": self.settings.backend, "tta": tta, "bytes": as_bytes, "input": digest(rgb)}

