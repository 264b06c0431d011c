"""Decoding many images on a few threads, with a progress bar, that stops when asked.

Pillow and numpy release the GIL, so threads decode in parallel. A ``with
ThreadPoolExecutor()`` block that is left by an exception (Ctrl-C, a study stopping its
workers with SIGTERM, a corrupt file) still waits for every task already queued, which for
``pool.map`` is all of them: a stop during the decode of a 50,000-file folder waited for the
whole folder, and a stopped study worker overran its grace period. Here the queued tasks are
cancelled, so only the few already running finish.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cnnbench.env import usable_cpus
from cnnbench.progress import progress

MAX_THREADS = 8


def decode_all(
    task: Callable[[int], object], count: int, *, desc: str, unit: str, show_progress: bool
) -> None:
    """Run ``task(i)`` for every ``i < count`` on up to ``MAX_THREADS`` usable CPUs, in any
    order, with a progress bar; the first exception (or an interrupt) cancels the rest and
    goes on to the caller."""
    pool = ThreadPoolExecutor(max(1, min(MAX_THREADS, usable_cpus())))
    try:
        with progress(total=count, desc=desc, unit=unit, disable=not show_progress) as bar:
            for _ in pool.map(task, range(count)):
                bar.update()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
