"""Request metrics of the inference service, through ``prometheus_client`` (text format 0.0.4).

Each ``Metrics`` has its own ``CollectorRegistry`` (two apps in one process never share
counts); any thread may record. Families:

- ``cnnbench_requests_total{path,code}``: every answered request (unknown paths: ``other``);
- ``cnnbench_request_errors_total{code}``: the subset with code >= 400;
- ``cnnbench_request_duration_seconds{path}``: histogram of the whole request, server side;
- ``cnnbench_predict_latency_seconds{quantile}``: p50/p90/p99 of the successful prediction
  requests over the last ``window`` of them (a summary: quantiles are not aggregatable,
  buckets are; ``prometheus_client``'s own Summary has no quantiles, so a collector
  renders this one);
- ``cnnbench_inference_duration_seconds``: histogram of model calls alone (one per batch);
- ``cnnbench_images_total``: images classified; ``cnnbench_in_flight_requests`` (gauge);
- ``cnnbench_model_info{...} 1`` and ``cnnbench_start_time_seconds``;
- ``process_*`` (resident memory, CPU seconds, open files) from ``ProcessCollector``.

Counters and histograms also get the client's standard ``*_created`` series.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric, SummaryMetricFamily

__all__ = ["CONTENT_TYPE", "DEFAULT_BUCKETS", "QUANTILES", "Metrics", "percentile"]

# Seconds; fine resolution below 50 ms, where a small CNN answers.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUANTILES = (0.5, 0.9, 0.99)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class _LatencyWindow:
    """A collector: the sliding-window summary of successful prediction requests."""

    NAME = "cnnbench_predict_latency_seconds"

    def __init__(self, window: int) -> None:
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        with self._lock:
            self._recent.append(seconds)

    def values(self) -> list[float]:
        with self._lock:
            return list(self._recent)

    def collect(self) -> Iterator[Metric]:
        recent = self.values()
        family = SummaryMetricFamily(
            self.NAME,
            f"Successful prediction requests, last {self._recent.maxlen} of them.",
            count_value=len(recent),
            sum_value=sum(recent),
        )
        for q in QUANTILES:
            family.add_sample(self.NAME, {"quantile": str(q)}, percentile(recent, q))
        yield family


class Metrics:
    """Thread-safe recorder of the service's requests; ``render()`` gives the exposition text."""

    def __init__(
        self,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        window: int = 4096,
        predict_paths: Iterable[str] = ("/predict", "/predict/batch"),
        info: Mapping[str, str] | None = None,
    ) -> None:
        r = self.registry = CollectorRegistry()
        self._predict_paths = frozenset(predict_paths)
        self._requests = Counter(
            "cnnbench_requests",
            "Requests answered, by path and code.",
            ["path", "code"],
            registry=r,
        )
        self._errors = Counter(
            "cnnbench_request_errors", "Requests answered with code >= 400.", ["code"], registry=r
        )
        self._durations = Histogram(
            "cnnbench_request_duration_seconds",
            "Whole request time on the server, by path.",
            ["path"],
            buckets=buckets,
            registry=r,
        )
        self._latency = _LatencyWindow(window)
        r.register(self._latency)
        self._inference = Histogram(
            "cnnbench_inference_duration_seconds",
            "Model calls alone (one per batch of images).",
            buckets=buckets,
            registry=r,
        )
        self._images = Counter("cnnbench_images", "Images classified.", registry=r)
        self._in_flight = Gauge(
            "cnnbench_in_flight_requests", "Requests being served now.", registry=r
        )
        self.info = {k: str(v) for k, v in (info or {}).items()}
        Info("cnnbench_model", "The served model (value is always 1).", registry=r).info(self.info)
        self.start_time = time.time()
        Gauge("cnnbench_start_time_seconds", "Unix time the service started.", registry=r).set(
            round(self.start_time, 3)
        )
        ProcessCollector(registry=r)

    def request_started(self) -> None:
        self._in_flight.inc()

    def request_finished(self, path: str, code: int, seconds: float) -> None:
        """Record one answered request (``path`` already reduced to a known route)."""
        self._in_flight.dec()
        self._requests.labels(path=path, code=str(code)).inc()
        if code >= 400:
            self._errors.labels(code=str(code)).inc()
        self._durations.labels(path=path).observe(seconds)
        if path in self._predict_paths and code < 400:
            self._latency.add(seconds)

    def inference(self, images: int, seconds: float) -> None:
        """Record one model call over ``images`` images."""
        self._images.inc(images)
        self._inference.observe(seconds)

    def snapshot(self) -> dict[str, object]:
        """Plain numbers for tests and logs: totals, errors by code, latency quantiles."""
        requests = sum(s.value for s in _samples(self._requests, "_total"))
        errors = {int(s.labels["code"]): int(s.value) for s in _samples(self._errors, "_total")}
        recent = self._latency.values()
        return {
            "requests": int(requests),
            "errors": errors,
            "images": int(sum(s.value for s in _samples(self._images, "_total"))),
            "latency_s": {q: percentile(recent, q) for q in QUANTILES},
        }

    def render(self) -> str:
        """The Prometheus text exposition of every family."""
        return generate_latest(self.registry).decode("utf-8")


def _samples(metric: Counter, suffix: str) -> Iterator[Any]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample
