"""Atomic file writes: a file holds either nothing new or the whole new content, never a part."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from esrgan.errors import StorageFullError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` that replaces it only when the block ends without error;
    on any error it is deleted, and a full disk is raised as StorageFullError."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
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
