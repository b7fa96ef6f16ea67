"""What the figures measured per model (its rate, its backend and precision) are kept under: the model's identity.

A model the catalogue lists (registered, shipped, or a checkpoint in the weights folder) is known by
its name. A checkpoint given by its path (``--model RUN/model.pth``, as ``train`` prints) is known
by that path, resolved, and its content's hash: its figures never stand for another file, and
measuring it loads that file again, never a name that no weights folder holds (the ``finetuned-RUN``
a fine-tuned checkpoint calls itself).

A key is meant to grow (the backend and the device a figure was measured on, say): new fields get
defaults, and `ModelKey.text` writes only what a key holds, so the keys already on disk keep their meaning.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

HASH_CHUNK = 1 << 20  # bytes read at a time while hashing a checkpoint


@dataclass(frozen=True)
class ModelKey:
    """One model's identity, for stores of measured figures.

    Attributes:
        model: What `esrgan.models.store.ModelStore.load` takes to load it again: the catalogue
            name, or the checkpoint's resolved path.
        sha256: The checkpoint file's content hash; None for a catalogue name.
        backend, device: Where a figure was measured, for backends other than torch (ncnn on the CPU
            or a Vulkan device); None for torch's, which are the model's own.
    """

    model: str
    sha256: str | None = None
    backend: str | None = None
    device: str | None = None

    @property
    def text(self) -> str:
        """The key as a JSON object's key: the name, or ``<path>#sha256=<hash>``; then `` [backend device]``
        for a figure of a backend other than torch."""
        text = self.model if self.sha256 is None else f"{self.model}#sha256={self.sha256}"
        return text if self.backend is None else f"{text} [{self.backend} {self.device}]"


def file_sha256(path: Path) -> str:
    """The file's sha256, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FileHashes:
    """sha256 of files, each read once while its size, modification time and inode stay the same. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int, int, int], str] = {}

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            known = self._known.get(stamp)
        if known is None:
            known = file_sha256(path)
            with self._lock:
                self._known[stamp] = known
        return known
