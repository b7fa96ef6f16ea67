"""Where uploaded and produced files live: random names, atomic writes, expiry.

Files are addressed by job id, never by the user's file name: a job's input is ``<id>_in.<ext>``, its
output ``<id>_out.<ext>``, its quick preview ``<id>_preview.png``, the browser-viewable copy of a
TIFF or 16-bit original ``<id>_before.png`` and a compare job's candidates ``<id>_candidate<N>.png``
(`web.jobs.compare`; those roles and no other), all in one flat folder
that every worker can reach. Job records sit beside them as ``<id>.json``, so a job survives as
plain data.

A job's files live as long as the job plus the time to live: those of a queued or running job never
expire (a long queue, or a slow first start, must not lose an upload before it runs), and a
finished job's expire ``ttl_seconds`` after it ended. Files no record speaks for (an upload whose
record never came, a stray temporary file) expire by their age.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import threading
import time
from pathlib import Path

from esrgan.io.imageio import write_atomic
from web.jobs.record import FINISHED

log = logging.getLogger(__name__)

FILE_NAME = re.compile(
    r"^(?P<id>[0-9a-f]{32})_(?P<role>in|out|preview|before|candidate\d{1,2})\.(?P<ext>png|jpg|webp|bmp|tiff|gif|mp4|webm|mkv|avi|video)$")
JOB_ID = re.compile(r"[0-9a-f]{32}")  # `new_id`'s
JOB_PREFIX = re.compile(r"^(?P<id>[0-9a-f]{32})[._]")  # any file (or folder) of one job, its record too
KEEP = float("inf")  # the expiry of a file whose job has not ended


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
        if not JOB_ID.fullmatch(job_id):
            return None
        try:
            return json.loads((self.root / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return None

    def work_dir(self, job_id: str) -> Path:
        """The folder (not created here) where a job's engine keeps its finished parts, so that a
        run interrupted by a crash resumes (`esrgan.io.resumable`); it expires with the job's files."""
        if not JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / f"{job_id}_work"

    def delete_work(self, job_id: str) -> None:
        """Remove a job's resumable parts (none is fine)."""
        self._remove(self.work_dir(job_id))

    def delete_temporaries(self, job_id: str) -> int:
        """Remove the half-written files (``.<job id>....part``, `write_atomic`'s) that a process
        killed in the middle of a write left behind; call it only when no live process writes the
        job. Returns how many went."""
        if not JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return sum(self._remove(path) for path in self.root.glob(f".{job_id}*.part"))

    def delete_job(self, job_id: str) -> None:
        for path in self.root.glob(f"{job_id}*"):
            self._remove(path)

    def sweep(self, now: float | None = None) -> int:
        """Delete what has outlived the TTL (see the module docstring: a job's files count from
        its end, the rest from their age); returns how many files went."""
        now = now or time.time()
        ends: dict[str, float] = {}  # job id -> when its files expire, read once per sweep
        removed = 0
        for path in self.root.iterdir():
            if path.name.startswith(".") and not path.name.endswith(".part"):
                continue  # .gitkeep and the like
            try:
                owner = JOB_PREFIX.match(path.name)
                if owner is not None and owner["id"] not in ends:
                    ends[owner["id"]] = self._expiry(owner["id"])
                expires = ends.get(owner["id"]) if owner is not None else None
                if expires is None:  # no record speaks for it: its age decides
                    expires = path.stat().st_mtime + self.ttl_seconds
                if expires < now:
                    removed += self._remove(path)
            except FileNotFoundError:
                continue
        if removed:
            log.info("expired %d files from %s", removed, self.root)
        return removed

    def _expiry(self, job_id: str) -> float | None:
        """When the files of ``job_id`` expire: never while it is queued or running, the TTL after
        its end once finished; None when it has no readable record."""
        record = self.load_record(job_id)
        if record is None:
            return None
        if record.get("status") not in FINISHED:
            return KEEP
        ended = record.get("finished_at")
        if not isinstance(ended, (int, float)):  # a finished record from before finished_at existed
            ended = (self.root / f"{job_id}.json").stat().st_mtime
        return float(ended) + self.ttl_seconds

    @staticmethod
    def _remove(path: Path) -> int:
        """Delete a file, or a job's folder with what is in it; returns how many files went."""
        if path.is_dir():
            inside = [p for p in path.rglob("*") if p.is_file()]
            shutil.rmtree(path, ignore_errors=True)
            return len(inside)
        if path.is_file():
            path.unlink()
            return 1
        return 0

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
