"""Who is upscaling which segment of a video job, told through the shared upload folder.

Every process that works on a job's segments (the worker running the job, and helper workers on
Celery) claims a segment before it upscales it: it creates ``<part>.claim`` exclusively, writes
into it the frames it has done so far and its own name (``"<frames> <holder>"``: the job's progress
counts every worker's frames, and anyone can see who holds what), and touches it as it goes. A
claim not touched for a while belongs to a process that died: anyone may take it over. The part
itself is written atomically, so a part that exists is complete. Parts and claims lie in the job's
segment store (`web.jobs.video.segment_store`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLAIM_SUFFIX = ".claim"


def claim_path(part: Path) -> Path:
    return part.with_name(part.name + CLAIM_SUFFIX)


def claim(part: Path, stale_seconds: float, holder: str = "") -> bool:
    """Claim ``part``'s segment for ``holder`` (a worker's name); False when another live process
    holds it (or it is done). A claim older than ``stale_seconds`` is taken over."""
    if part.is_file():
        return False
    path = claim_path(part)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime < stale_seconds:
                    return False
                path.unlink()  # its holder died: take it over
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(_content(0, holder))
        return not part.is_file()
    return False


def report(part: Path, frames_done: int, holder: str = "") -> None:
    """Say how far this claim's holder is (and that it is alive)."""
    try:
        claim_path(part).write_text(_content(frames_done, holder))
    except OSError:
        pass


def release(part: Path) -> None:
    claim_path(part).unlink(missing_ok=True)


@contextmanager
def holding(part: Path, stale_seconds: float) -> Iterator[None]:
    """Keep a claim fresh while the block runs (a frame may take longer than ``stale_seconds``),
    and release it at the end."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(stale_seconds / 4):
            try:
                os.utime(claim_path(part))
            except OSError:
                return

    thread = threading.Thread(target=beat, name="segment-claim", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        release(part)


def frames_in_progress(part: Path) -> int:
    """Frames another process has done of a claimed segment (0 when unclaimed or unreadable)."""
    try:
        return int(claim_path(part).read_text().partition(" ")[0] or 0)
    except (OSError, ValueError):
        return 0


def _content(frames_done: int, holder: str) -> str:
    return f"{frames_done} {holder}".strip()
