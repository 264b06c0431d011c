"""Decoding stops when asked: queued tasks are cancelled, not waited for."""

from __future__ import annotations

import threading
import time

import pytest

from cnnbench.data import decode_pool
from cnnbench.data.decode_pool import decode_all


def test_every_task_runs_once():
    seen = []
    lock = threading.Lock()

    def task(i):
        with lock:
            seen.append(i)

    decode_all(task, 500, desc="t", unit="img", show_progress=False)
    assert sorted(seen) == list(range(500))


@pytest.mark.parametrize("stop", [ValueError, KeyboardInterrupt])
def test_a_failure_or_an_interrupt_cancels_the_queued_tasks(monkeypatch, stop):
    monkeypatch.setattr(decode_pool, "usable_cpus", lambda: 2)
    ran = []

    def task(i):
        ran.append(i)
        if i == 0:
            raise stop("stop")
        time.sleep(0.01)

    with pytest.raises(stop):
        decode_all(task, 2000, desc="t", unit="img", show_progress=False)
    time.sleep(0.3)  # the tasks already taken by a thread finish; the queued ones never start
    # A with-block around the pool would have run all 2,000 (20 s) before raising.
    assert len(ran) < 100
