"""Latency statistics and the timing loop (behaviour, never wall-clock values)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnbench.bench._timing import latency_stats, percentile, rss_probe, time_calls


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=300))
def test_stats_are_ordered_and_match_numpy(times):
    s = latency_stats(times)
    assert s["iters"] == len(times)
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    ms = np.asarray(times) * 1e3
    for q in (50, 90, 99):
        assert s[f"p{q}_ms"] == pytest.approx(np.percentile(ms, q), rel=1e-9, abs=1e-9)


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        latency_stats([])


def test_time_calls_counts_warmup_and_iterations():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=3, iters=17)
    assert len(times) == 17 and len(calls) == 20
    assert all(t >= 0 for t in times)


def test_time_calls_stops_at_the_time_limit_but_keeps_a_minimum():
    times = time_calls(lambda: None, warmup=0, iters=10**9, max_seconds=0.0, min_iters=7)
    assert len(times) == 7


def test_sync_runs_after_every_timed_call():
    synced = []
    time_calls(lambda: None, warmup=2, iters=5, sync=lambda: synced.append(1))
    assert len(synced) == 5 + 1  # once after the warm-up, once per timed call


def test_rss_probe_sees_an_allocation():
    with rss_probe() as probe:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, every page touched
    del block
    if probe.method != "vmhwm-reset":
        pytest.skip("no resettable high-water mark (not Linux): the fallback may read 0")
    assert probe.delta >= 32 * 2**20
