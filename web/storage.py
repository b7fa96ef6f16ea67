"""Where uploaded and produced files live: random names, atomic writes, expiry.

Files are addressed by job id, never by the user's file name: a job's input is ``<id>_in.<ext>``, its
output ``<id>_out.<ext>``, its quick preview ``<id>_preview.png`` and the browser-viewable copy of a
TIFF or 16-bit original ``<id>_before.png`` (those four roles and no other), all in one flat folder
that every worker can reach. Job records sit beside them as ``<id>.json``, so a job survives as
plain data.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from pathlib import Path

from esrgan.imageio import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^(?P<id>[0-9a-f]{32})_(?P<role>in|out|preview|before)\.(?P<ext>png|jpg|webp|bmp|tiff|gif|mp4|webm|mkv|avi|video)$")


def new_id() -> str:
    """A 128-bit random job id: unguessable, so a file's URL is its capability."""
    return secrets.token_hex(16)


class FileStore:
    """A flat folder of job files with a time to live.

    Args:
        root: The folder (created if missing).
        ttl_seconds: Files and records older than this are deleted by `sweep`.
    """

    def __init__(self, root: Path | str, ttl_seconds: float = 3600) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_seconds = ttl_seconds
        self._stop = threading.Event()

    def path(self, job_id: str, role: str, ext: str) -> Path:
        name = f"{job_id}_{role}.{ext}"
        if not FILE_NAME.match(name):
            raise ValueError(f"not a job file name: {name!r}")
        return self.root / name

    def write(self, job_id: str, role: str, ext: str, data: bytes) -> str:
        """Store bytes atomically; returns the file's name."""
        path = self.path(job_id, role, ext)
        write_atomic(path, data)
        return path.name

    def read(self, name: str) -> bytes:
        return self.resolve(name).read_bytes()

    def resolve(self, name: str) -> Path:
        """The path of a stored file by name; ValueError for any name we did not make."""
        if not FILE_NAME.match(name):
            raise ValueError(f"not a job file name: {name!r}")
        return self.root / name

    def exists(self, name: str) -> bool:
        try:
            return self.resolve(name).is_file()
        except ValueError:
            return False

    def delete(self, name: str) -> None:
        """Remove one stored file (gone already is fine)."""
        try:
            self.resolve(name).unlink(missing_ok=True)
        except (ValueError, OSError):
            log.warning("could not delete %s", name)

    def records(self) -> list[dict]:
        """Every job record in the folder (unreadable ones skipped), oldest first."""
        found = []
        for path in self.root.glob("*.json"):
            record = self.load_record(path.stem)
            if record is not None:
                found.append(record)
        return sorted(found, key=lambda r: r.get("created_at", 0))

    def save_record(self, job_id: str, record: dict) -> None:
        write_atomic(self.root / f"{job_id}.json", json.dumps(record).encode())

    def load_record(self, job_id: str) -> dict | None:
        if not re.fullmatch(r"[0-9a-f]{32}", job_id):
            return None
        try:
            return json.loads((self.root / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return None

    def delete_job(self, job_id: str) -> None:
        for path in self.root.glob(f"{job_id}*"):
            path.unlink(missing_ok=True)

    def sweep(self, now: float | None = None) -> int:
        """Delete files older than the TTL (and stray temp files); returns how many went."""
        cutoff = (now or time.time()) - self.ttl_seconds
        removed = 0
        for path in self.root.iterdir():
            if path.name.startswith(".") and not path.name.endswith(".part"):
                continue  # .gitkeep and the like
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("expired %d files from %s", removed, self.root)
        return removed

    def start_sweeper(self) -> None:
        """Sweep now and then every quarter TTL (at most every minute), in a daemon thread."""
        interval = max(1.0, min(60.0, self.ttl_seconds / 4))

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.sweep()
                except OSError:
                    log.exception("sweeping %s failed", self.root)
                self._stop.wait(interval)

        threading.Thread(target=loop, name="file-sweeper", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
