"""Atomic file writes: a file holds either nothing new or the whole new content, never a part.

The temporary file is made private (``mkstemp``: 0600); the finished one gets the permissions any
new file would (0644 under the usual umask 022), as a shell's ``>`` or a plain ``open`` gives.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from esrgan.errors import StorageFullError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
PROC_STATUS = Path("/proc/self/status")  # Linux says the umask here ("Umask:"), read without changing it
_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's file-creation mask (read from /proc where it can, else set and put back at once)."""
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # os.umask only reads by setting: other threads' files meanwhile get 022
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permissions a new regular file gets here: 0666 less the umask."""
    return 0o666 & ~umask()


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` that replaces it only when the block ends without error
    (with the permissions of a new file, `new_file_mode`); on any error it is deleted, and a full
    disk is raised as StorageFullError."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise StorageFullError(f"no space left to write {path.name}; free some disk space") from exc
        raise


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes so that ``path`` holds either nothing new or the whole file, never a part.

    Raises:
        StorageFullError: The disk or the quota is full (nothing is left behind).
    """
    with atomic_file(path) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
