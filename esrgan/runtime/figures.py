"""The figures this machine measured per model (`esrgan.runtime.rates`, `esrgan.runtime.per_model`),
each kind in one JSON file beside the converted weights, keyed by the model's identity
(`esrgan.models.keys.ModelKey`: its catalogue name, or a checkpoint's path and hash).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from esrgan.errors import StorageFullError
from esrgan.io.atomic import write_atomic
from esrgan.models.keys import ModelKey

log = logging.getLogger(__name__)


class FiguresFile:
    """One JSON object of records, ``{key text: record}``. Thread-safe; each write replaces the
    whole file at once. Where the file cannot be written (a read-only or full disk), the records
    are kept for this process only, and said so once in the log.

    Args:
        path: The JSON file; None keeps the records in memory only.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: dict[str, dict] | None = None if path is not None else {}  # set: the file is not used
        self._lock = threading.Lock()

    def get(self, key: ModelKey) -> dict | None:
        """The model's record, or None."""
        record = self._read().get(key.text)
        return record if isinstance(record, dict) else None

    def put(self, key: ModelKey, record: dict) -> None:
        """Keep ``record`` as the model's (replacing what it had)."""
        with self._lock:
            data = self._read()
            data[key.text] = record
            if self._memory is None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
                    return
                except (OSError, StorageFullError) as exc:
                    log.warning("could not record figures in %s (%s): kept for this process only", self.path, exc)
            self._memory = data

    def _read(self) -> dict:
        if self._memory is not None:
            return dict(self._memory)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
