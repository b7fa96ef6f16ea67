"""decode -> pick a model -> tiled inference -> resample -> (the caller encodes). `Upscaler` is the
engine's front: stateless per call, safe to share between threads; it keeps only its `ModelStore`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from esrgan.errors import FacesUnavailableError
from esrgan.faces.service import FaceRestoration
from esrgan.io.imageio import DecodedImage
from esrgan.io.resumable import WorkStore, digest, work_identity
from esrgan.models import registry
from esrgan.models.keys import ModelKey
from esrgan.models.store import LoadedModel, ModelStore
from esrgan.models.whole import approximation, whole_spec
from esrgan.options import UpscaleOptions
from esrgan.result import Provenance, UpscaleResult, resample
from esrgan.runtime import compiled
from esrgan.runtime.choose import CALIBRATION_MODEL, DTYPES, Runtime, choose_runtime, needs_calibration
from esrgan.runtime.devices import describe, resolve_device
from esrgan.runtime.measure import NCNN, TORCH
from esrgan.runtime.ncnn_backend import NetworkCache
from esrgan.runtime.per_model import ENGINES, PRECISION_FILE, ModelChoices
from esrgan.runtime.rates import RATES_FILE, RateStore, flops_per_pixel, prior_rate, rate_key, registry_flops
from esrgan.runtime.recheck import CalibrationWatch
from esrgan.settings import Settings
from esrgan.sizing import check_output_size
from esrgan.tile_choice import tile_options
from esrgan.tiling.plan import TileOptions, TilePlan, model_context, plan_for
from esrgan.tiling.run import TiledResult, run_plan, upscale_tiled
from esrgan.tiling.steps import CancelFn, ProgressFn
from esrgan.tiling.tta import passes_for, with_tta

log = logging.getLogger(__name__)
UPSCALED_LOG = "upscaled %dx%d -> %dx%d with %s in %.1fs"  # per image (a video's frames leave it out)

StageFn = Callable[[str], None]

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
        self._flops: dict[str, float] = {}
        self.networks = NetworkCache()  # shipped graphs on ncnn (`esrgan.runtime.ncnn_backend`)
        # each model's own backend and precision on the CPU, measured once (`esrgan.runtime.per_model`)
        self.choices = ModelChoices(self.store.weights_dir / "converted" / PRECISION_FILE, self.networks)
        self._runtime: Runtime | None = None
        self._runtime_lock = threading.Lock()
        self.watch = CalibrationWatch()  # when the CPU is measured again (`recalibrate_if_due`)

    @cached_property
    def faces(self) -> FaceRestoration:
        """"Restore faces" with the face checkpoint in the weights folder (`esrgan.faces`); its
        ``unavailable_reason()`` says whether one is there (looked for at each call, so a file added
        later counts) and, if not, how to add one."""
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
        record, settings = self.calibration_record, self.settings
        return not needs_calibration(self.device, settings.precision, record, self.store, settings.backend)

    @property
    def runtime(self) -> Runtime:
        """Precision and layout: the user's, or measured on first use (then recorded).

        Raises:
            InvalidOptionError: The options name a precision or backend this device cannot run.
        """
        with self._runtime_lock:
            if self._runtime is None:
                if not self.calibrated:
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
        """The tiling of a run of ``model`` whose result has ``output_pixels`` here (`esrgan.tile_choice`)."""
        return tile_options(self.settings, self.device, lambda must: self.runtime if must else self._runtime,
                            output_pixels, model)

    def load(self, model: str, measure: bool = False) -> LoadedModel:
        """The model ready to run; on the CPU with precision ``auto``, on the backend and in the
        precision its own figures choose (`esrgan.runtime.per_model`). ``measure``: measure a model
        this CPU has no figures for now (runs do, estimates do not: they take the calibration's torch choice)."""
        runtime = self.runtime
        engine, precision = runtime.engine, runtime.precision
        if self.device.type == "cpu" and self.settings.precision == "auto" and runtime.engine != NCNN:
            engines = ENGINES if self.settings.backend == "auto" else (TORCH,)  # --backend torch... stays torch
            engine, precision = self.choices.choose(self.store, model, runtime.precision, engines, measure)
        if engine == NCNN:
            return self.networks.load(self.store, model, self.device, precision)
        precision = "bf16" if precision == "fp16" and whole_spec(self.store.entry(model).name) else precision
        return self.store.load(model, self.device, DTYPES[precision], runtime.channels_last)

    def tile_plan(self, width: int, height: int, model: str) -> TilePlan:
        """The tiles a run of ``model`` over a ``width`` x ``height`` image will cut: planned once,
        read by the estimate (`work_pixels`), the progress total and the run itself."""
        return self._tile_plan(self.load(model), width, height)

    def _tiling(self, loaded: LoadedModel, width: int, height: int) -> TileOptions:
        return self.tile_options(width * height * loaded.entry.scale**2, loaded.entry.name)

    def _tile_plan(self, loaded: LoadedModel, width: int, height: int) -> TilePlan:
        tiling = self._tiling(loaded, width, height)
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
        will process. Loads the model (once) to count them."""
        loaded = self.load(model)
        calibrated = self.runtime.seconds_per_pixel if self.calibrated else None  # an estimate never measures
        rate = self.rates.get(rate_key(self.store.key(model), loaded.backend, str(self.device)))
        if rate is None:
            rate = prior_rate(self._model_flops(model, loaded), self.device.type, calibrated,
                              self._model_flops(CALIBRATION_MODEL) if calibrated else None)
        return rate * self._tile_plan(loaded, width, height).work_pixels

    def _model_flops(self, model: str, loaded: LoadedModel | None = None) -> float:
        if model not in self._flops:
            loaded = loaded or self.load(model)
            weighted = next(loaded.module.parameters(), None) is not None  # ncnn's networks hold no weights here
            self._flops[model] = (flops_per_pixel(loaded.module, loaded.size_multiple) if weighted
                                  else registry_flops(loaded.entry.name))
        return self._flops[model]

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
        """Upscale one image: route, check, load, run the chain and the tiles, resample, faces.

        Args:
            image: The decoded input (gray, RGB, with or without alpha; 8 or 16 bit).
            scale, anime, model, noise, tta, faces, float_result: What is asked (`UpscaleOptions`
                says each).
            progress: Called with (steps done, total steps): several per tile (per RRDB block, per
                convolution of the fast model), monotonic, the last with done == total.
            cancelled: Polled at every step, inside the forward pass too; True stops the work
                with `Cancelled` within one step.
            stage: Called with ``"calibrating"`` (only when the one-time CPU measurement really
                runs now), ``"loading"`` and ``"upscaling"``.
            checkpoint: A folder of this job's own: finished tiles are kept there, so the same call
                after a crash resumes at the first unfinished tile (`esrgan.io.resumable`); removed
                when the result is made. A folder holding another work's parts is emptied first.

        Raises:
            UnsupportedScaleError, NoiseNotAvailableError, ModelNotFoundError, ImageTooLargeError,
            WeightsError, Cancelled; FacesUnavailableError (before any work: faces asked, no
            checkpoint or detector here), FaceRestorerError (the checkpoint does not load).
        """
        started = time.perf_counter()
        ask = UpscaleOptions(scale, anime, model, noise, tta, faces, float_result)
        chosen = self._route(image, ask)
        loaded = self._ready(chosen.models, stage)
        rgb = self._run_before(image.rgb(), chosen.before, tta, cancelled)
        as_bytes = ask.bytes_result(image, chosen)
        key = rate_key(self.store.key(chosen.model), loaded.backend, str(self.device))
        tiled, store = self._run_tiles(rgb, key, loaded, tta, as_bytes, checkpoint, progress, cancelled)
        out, alpha = self._finish(image, tiled.image, chosen, faces)
        provenance = Provenance(
            model=loaded.entry.name, model_title=loaded.entry.title, weights=loaded.entry.source,
            native_scale=chosen.native_scale, scale=chosen.scale, resample=chosen.resample,
            device=describe(self.device), precision=getattr(loaded.module, "storage", PRECISION_NAMES[loaded.dtype]),
            backend=loaded.backend, tiles=tiled.plan.count, seconds=round(time.perf_counter() - started, 3),
            tile=tiled.plan.tile, before=chosen.before, tta=tta, faces=faces,
            approximate=approximation(loaded.entry.name, tiled.plan.count),
        )
        log.info(UPSCALED_LOG, image.width, image.height, *out.shape[1::-1],
                 loaded.entry.name, provenance.seconds)
        if store is not None:
            store.delete()
        return UpscaleResult(image.with_rgb(out if as_bytes else np.clip(out, 0, 1, out=out), alpha), provenance)

    def _route(self, image: DecodedImage, ask: UpscaleOptions) -> registry.Plan:
        """The registry's plan for ``ask``, checked before any work: the result's size, and faces."""
        chosen = self.plan(ask.scale, ask.anime, ask.model, ask.noise)
        check_output_size(image.width, image.height, chosen.scale, self.settings.max_output_pixels)
        if ask.faces and (missing := self.faces.unavailable_reason()) is not None:
            raise FacesUnavailableError(missing)
        return chosen

    def _ready(self, models: tuple[str, ...], stage: StageFn | None) -> LoadedModel:
        """The last of ``models`` (a chain's) loaded, each measured first where it must be (the CPU
        once, a model the first time it runs), each stage said."""
        if stage is not None and not self.calibrated:
            stage("calibrating")
        self.runtime  # noqa: B018  measures the CPU now if it must, before "loading"
        if stage is not None:
            stage("loading")
        loaded = [self.load(model, measure=True) for model in models][-1]
        if stage is not None:
            stage("upscaling")
        return loaded

    def _run_before(self, rgb: np.ndarray, chain: tuple[str, ...], tta: bool, cancelled: CancelFn | None) -> np.ndarray:
        """A chain's first models (`registry.Plan.before`), each on the whole output of the last."""
        for name in chain:
            step = self.load(name)
            step_tiling = self._tiling(step, rgb.shape[1], rgb.shape[0])
            rgb = upscale_tiled(self._module(step, step_tiling, tta), rgb, scale=step.entry.scale,
                                size_multiple=step.size_multiple, options=step_tiling, device=step.device,
                                dtype=step.dtype, channels_last=step.channels_last, cancelled=cancelled)
        return rgb

    def _run_tiles(self, rgb: np.ndarray, key: ModelKey, loaded: LoadedModel, tta: bool, as_bytes: bool,
                   checkpoint: Path | None, progress: ProgressFn | None,
                   cancelled: CancelFn | None) -> tuple[TiledResult, WorkStore | None]:
        """The main model over ``rgb``, tile by tile, its finished tiles kept in ``checkpoint`` (the
        store is returned for the caller to delete once the result is made); its rate learnt."""
        tiling = self._tiling(loaded, rgb.shape[1], rgb.shape[0])
        module = self._module(loaded, tiling, tta)
        plan = plan_for(rgb.shape[0], rgb.shape[1], tiling, loaded.size_multiple, model_context(module))
        resumable = checkpoint is not None and plan.count > 1  # one tile has nothing to resume part-way
        store = WorkStore.open(checkpoint, self._identity(loaded, rgb, tta, as_bytes)) if resumable else None
        inference_started = time.perf_counter()
        tiled = run_plan(module, rgb, plan, scale=loaded.entry.scale, options=tiling, device=loaded.device,
                         dtype=loaded.dtype, channels_last=loaded.channels_last, progress=progress,
                         cancelled=cancelled, checkpoint=store, quantise=as_bytes)
        if not tiled.resumed:  # a resumed run's time covers only part of the plan
            inference_seconds = time.perf_counter() - inference_started
            self._learn(key, loaded, inference_seconds, tiled.plan.work_pixels * passes_for(tta))  # per pixel of a pass
        return tiled, store

    def _learn(self, key: ModelKey, loaded: LoadedModel, seconds: float, work: int) -> None:
        """What a whole run took: the model's rate, and on the CPU whether the calibration still holds."""
        self.rates.learn(key, seconds, work)
        if loaded.device.type == "cpu":
            self.check_calibration(loaded.entry.name, seconds, work)

    def _finish(self, image: DecodedImage, out: np.ndarray, chosen: registry.Plan,
                faces: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The network's output resampled to the size asked, faces restored over it; the input's alpha
        resampled to that size."""
        size = registry.output_size(image.width, image.height, chosen.scale)
        if chosen.resample is not None:
            out = resample(out, size)
        if faces:
            out = self.faces.apply(image.rgb(), out, chosen.scale)
        return out, resample(image.alpha, size) if image.has_alpha else None

    def _identity(self, loaded: LoadedModel, rgb: np.ndarray, tta: bool, as_bytes: bool) -> dict:
        """What decides a tiled run's parts (not the tile size: a resumed run keeps its own plan)."""
        return work_identity("tiles", self.settings, model=loaded.entry.name, weights=loaded.entry.source,
                             device=loaded.device.type, dtype=str(loaded.dtype), channels_last=loaded.channels_last,
                             tta=tta, bytes=as_bytes, input=digest(rgb))
