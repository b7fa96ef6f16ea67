"""The process's memory between tiles: freed activations handed back to the OS."""

from __future__ import annotations

import ctypes


def return_freed_memory() -> None:
    """Give the previous tile's freed activations back to the OS (glibc keeps them otherwise, and
    fragmentation then grows the process by hundreds of MB over a large image). Costs nothing
    measurable per tile; a no-op where the C library is not glibc."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()
