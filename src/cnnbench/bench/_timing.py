"""Timing loops, latency statistics and peak-memory probes; no torch import (workers use it).

Every number here comes from ``time.perf_counter_ns`` around one call; the caller passes a
``sync`` function when the device is asynchronous (CUDA), so a call's time includes its work.
"""

from __future__ import annotations

import gc
import math
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "current_rss",
    "latency_stats",
    "percentile",
    "release_free_memory",
    "rss_probe",
    "time_calls",
]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, linear interpolation.

    The same definition as ``numpy.percentile``'s default, so it is monotone in ``q``.
    """
    if not sorted_values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def latency_stats(times_s: Sequence[float]) -> dict[str, float | int]:
    """p50 / p90 / p99 / mean / min / max in milliseconds, and the number of calls."""
    if not times_s:
        raise ValueError("no timings")
    ms = sorted(t * 1e3 for t in times_s)
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "iters": len(ms),
    }


def time_calls(
    fn: Callable[[], Any],
    *,
    warmup: int,
    iters: int,
    max_seconds: float = math.inf,
    min_iters: int = 5,
    sync: Callable[[], None] | None = None,
) -> list[float]:
    """Seconds of each of up to ``iters`` calls of ``fn`` after ``warmup`` untimed calls.

    Stops early once ``max_seconds`` of timed calls have passed and at least ``min_iters`` are
    done (slow models would otherwise take minutes); the caller reports how many ran. The
    garbage collector is off while timing, as in ``timeit``: a collection is not the model's.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        deadline = time.perf_counter() + max_seconds
        for i in range(iters):
            t0 = time.perf_counter_ns()
            fn()
            if sync is not None:
                sync()
            times.append((time.perf_counter_ns() - t0) * 1e-9)
            if i + 1 >= min_iters and time.perf_counter() > deadline:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss() -> int | None:
    """Resident memory of this process now, in bytes (None where /proc is missing)."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else None


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``), so the next RSS peak
    counts the pages a block really touches instead of reusing ones freed before it."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class rss_probe:  # lower case: used like a function, ``with rss_probe() as probe``
    """Peak resident memory added by the code inside ``with``, in bytes (this process only).

    On Linux the kernel's high-water mark is reset to the current RSS on entry (writing 5 to
    ``/proc/self/clear_refs``), so the peak is the block's own, even when loading the model
    peaked higher before. Elsewhere it falls back to the ``getrusage`` maxrss delta, which
    reads 0 if the block stayed under an earlier peak; ``method`` says which was used.
    """

    def __enter__(self) -> rss_probe:
        release_free_memory()
        self.method = "getrusage"
        try:
            Path("/proc/self/clear_refs").write_text("5")
            if _status_kib("VmHWM") is not None:
                self.method = "vmhwm-reset"
        except OSError:
            pass
        rss = _status_kib("VmRSS")
        self.before = rss * 1024 if rss is not None else self._maxrss()
        self.before_maxrss = self._maxrss()
        return self

    @staticmethod
    def _maxrss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    def __exit__(self, *exc: object) -> None:
        if self.method == "vmhwm-reset":
            self.peak = (_status_kib("VmHWM") or 0) * 1024
            self.delta = max(0, self.peak - self.before)
        else:
            self.peak = self._maxrss()
            self.delta = max(0, self.peak - self.before_maxrss)
