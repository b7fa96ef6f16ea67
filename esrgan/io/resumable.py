"""Finished units of a long piece of work, kept in a folder so the work can resume after a crash.

One mechanism for every kind of long work: the tiles of an image (`esrgan.tiling.run.run_plan`), the
segments of a video. A `WorkStore` is a folder with a manifest naming the work's identity (the model,
its options, a hash of the input, ...: whatever decides the result) and one file per finished unit.
Every write is atomic (written beside, then renamed), so a unit is either whole or absent, whatever
moment the process dies at. Opened with a different identity, the folder is emptied first: a changed
job never resumes from stale parts.

    store = WorkStore.open(job_folder / "work", work_identity("tiles", settings, model=name, input=digest(pixels)))
    if not store.has("tile-0-64-0-64"):
        store.save_array("tile-0-64-0-64", output)
    ...
    store.delete()  # the work is done: the folder goes

Unit names are short ASCII words (letters, digits, ``-``, ``_``, ``.``; not starting with a dot).

Several processes (the video segments a job shares with other workers): one process owns the store
and alone calls `WorkStore.open` (which may empty the folder) and `delete`; the others call
`WorkStore.join`, which never creates or empties anything and refuses a folder whose manifest names
other work, and only add units. Distinct units written by distinct processes do not interfere
(each is one atomic rename). A helper that joined before the owner emptied the folder for changed
work could still add a unit under an old name: writers that share a store put `tag` (a digest of
the identity) in their unit names, so a stale unit is never mistaken for one of the new work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esrgan.io.atomic import DISK_FULL_ERRNOS

if TYPE_CHECKING:
    from esrgan.settings import Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TAG_LENGTH = 12  # hex digits of `WorkStore.tag`: 48 bits, no two works of one job collide
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}$")
# The engine settings that decide a result's pixels: in the identity of every kind of work.
ENGINE_SETTINGS = ("device", "precision", "backend", "tile_pad", "pre_pad", "se_sync")


def digest(*parts: Any) -> str:
    """A sha256 of arrays (their dtype, shape and bytes), bytes and JSON-able values, in order."""
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            sha.update(f"{part.dtype}{part.shape}".encode())
            sha.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (bytes, bytearray)):
            sha.update(part)
        else:
            sha.update(json.dumps(part, sort_keys=True, default=str).encode())
    return sha.hexdigest()


def work_identity(work: str, engine: Settings, **facts: Any) -> dict:
    """The identity a store of ``work`` (its kind: "tiles", "video-segments" ...) is opened with: the
    engine's settings that decide any result (`ENGINE_SETTINGS`: one added there counts for every
    kind of work), then the ``facts`` that decide this one's (the model, the input's digest ...)."""
    return {"work": work, "engine": {name: getattr(engine, name) for name in ENGINE_SETTINGS}, **facts}


class WorkStore:
    """A folder of finished units of one piece of work (see the module docstring).

    Owned by one process at a time (others may `join` it to add units); units are written
    atomically. Keeping units is a courtesy to a run that may crash, never a condition of the work:
    on a full disk the store stops keeping new units (`full`) and the work goes on.
    """

    def __init__(self, folder: Path, identity: dict) -> None:
        self.folder = Path(folder)
        self.identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        self.full = False

    @classmethod
    def open(cls, folder: Path | str, identity: dict) -> WorkStore:
        """The store in ``folder`` for the work named by ``identity``: its finished units when the
        manifest names the same work, an empty store otherwise (stale units are removed)."""
        store = cls(Path(folder), identity)
        manifest = store.folder / MANIFEST
        try:
            same = json.loads(manifest.read_text()) == store.identity
        except (OSError, ValueError):
            same = False
        if not same:
            if store.folder.exists():
                shutil.rmtree(store.folder)
            store.folder.mkdir(parents=True)
            store._write(MANIFEST, json.dumps(store.identity, sort_keys=True).encode())
        return store

    @classmethod
    def join(cls, folder: Path | str, identity: dict) -> WorkStore | None:
        """The store another process opened in ``folder`` for the work named by ``identity``, to add
        units to; None when there is none or its manifest names other work. Creates and empties
        nothing (only the owner, through `open`, does)."""
        store = cls(Path(folder), identity)
        try:
            same = json.loads((store.folder / MANIFEST).read_text()) == store.identity
        except (OSError, ValueError):
            same = False
        return store if same else None

    @property
    def tag(self) -> str:
        """A short digest of the identity, for unit names that several processes write (module docstring)."""
        return digest(self.identity)[:TAG_LENGTH]

    def has(self, name: str) -> bool:
        return self._path(name).is_file()

    def names(self) -> list[str]:
        """The finished units, by name."""
        return sorted(p.stem for p in self.folder.glob("*.unit") if _NAME.match(p.stem))

    def save_array(self, name: str, array: np.ndarray) -> None:
        """Keep a numpy array as unit ``name`` (exactly: dtype, shape and bits)."""
        with tempfile.TemporaryFile() as buffer:  # np.save wants a file; then one atomic write
            np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
            buffer.seek(0)
            self._write(self._path(name).name, buffer.read())

    def load_array(self, name: str) -> np.ndarray:
        with open(self._path(name), "rb") as handle:
            return np.load(handle, allow_pickle=False)

    def save_json(self, name: str, value: Any) -> None:
        self._write(self._path(name).name, json.dumps(value, sort_keys=True).encode())

    def load_json(self, name: str) -> Any:
        return json.loads(self._path(name).read_text())

    def adopt_file(self, name: str, path: Path | str) -> Path:
        """Move a finished file (an encoded video segment ...) in as unit ``name``; returns where it
        now lies. ``path`` must be on the same file system for the move to be atomic."""
        target = self._path(name)
        os.replace(path, target)
        return target

    def path(self, name: str) -> Path:
        """Where unit ``name`` lies (or would lie)."""
        return self._path(name)

    def delete(self) -> None:
        """The work is done (its result is kept elsewhere): remove the folder and every unit in it."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"a unit name is a short ASCII word, not {name!r}")
        return self.folder / f"{name}.unit"

    def _write(self, filename: str, data: bytes) -> None:
        if self.full:
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        except OSError as exc:
            self._disk_full(exc)
            return
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.folder / filename)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            self._disk_full(exc)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _disk_full(self, exc: OSError) -> None:
        """Stop keeping units when the disk is full (re-raise anything else)."""
        if exc.errno not in DISK_FULL_ERRNOS:
            raise exc
        self.full = True
        log.warning("no room to keep finished work in %s (%s): going on without checkpoints", self.folder, exc)
