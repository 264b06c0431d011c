"""Memory the service gives back: glibc's malloc settings, and the process's resident size.

Why. A large decode allocates tens of MB in a few buffers and frees them a moment later.
glibc serves an allocation over ``M_MMAP_THRESHOLD`` (128 KiB at start) with its own
``mmap``, returned to the OS on ``free``; but each such free *raises* the threshold to the
freed size (up to 32 MiB), so the next decode's buffers come from the heap and the
per-thread arenas instead, where free memory stays in the process. Measured here (Pillow
13, glibc, four threads decoding two 49 MP 1-bit PNGs and two 4 MP RGBA PNGs, three
rounds): RSS 35 MB -> 275 MB after round one and 147-174 MB after the others; one
``malloc_trim(0)`` at the end brought it to 62 MB; with the threshold pinned at 1 MiB it
stayed at 36 MB throughout. So the service pins it (``mallopt``), which turns every
allocation of 1 MiB or more into its own mapping: a page-fault cost on large buffers only,
and none of them outlives its request. It also trims after each large decode (the smaller
buffers of a decode stay on the heaps otherwise); in ``benchmarks/serve_fuzz.py`` that
changed the RSS growth over 1,000 hostile uploads from 22.6 to 19.7 MB, within noise.

Off glibc (musl, macOS, Windows) the functions are no-ops that return False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Any

__all__ = ["MMAP_THRESHOLD", "pin_mmap_threshold", "rss_bytes", "trim"]

MMAP_THRESHOLD = 1 << 20  # bytes; allocations this large get their own mapping
_M_MMAP_THRESHOLD = -3  # from glibc's <malloc.h>


@functools.cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # not glibc
    return libc


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (process-wide; stops its dynamic growth), so
    freed large buffers go back to the OS at once. True if it was set."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1)


def trim() -> bool:
    """``malloc_trim(0)``: hand free heap pages of every arena back to the OS. True if any."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


def rss_bytes(pid: int | None = None) -> int | None:
    """Resident set size of a process (this one by default), from /proc; None without it."""
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
