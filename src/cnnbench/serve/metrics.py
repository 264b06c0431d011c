"""Request metrics of the inference service, rendered in the Prometheus text format (0.0.4).

Written by hand (no ``prometheus_client`` dependency): a handful of counters, two histograms
and one sliding-window summary, all behind one lock, so any thread may record. Families:

- ``cnnbench_requests_total{path,code}``: every answered request (unknown paths: ``other``);
- ``cnnbench_request_errors_total{code}``: the subset with code >= 400;
- ``cnnbench_request_duration_seconds{path}``: histogram of the whole request, server side;
- ``cnnbench_predict_latency_seconds{quantile}``: p50/p90/p99 of the prediction requests
  over the last ``window`` of them (a summary: quantiles are not aggregatable, buckets are);
- ``cnnbench_inference_duration_seconds``: histogram of model calls alone (one per batch);
- ``cnnbench_images_total``: images classified; ``cnnbench_in_flight_requests`` (gauge);
- ``cnnbench_model_info{...} 1`` and ``cnnbench_start_time_seconds``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence

# Seconds; fine resolution below 50 ms, where a small CNN answers.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUANTILES = (0.5, 0.9, 0.99)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs.items()) + "}"


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)  # non-cumulative; made cumulative on render
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, upper in enumerate(self.buckets):
            if value <= upper:
                self.counts[i] += 1
                break
        self.total += 1
        self.sum += value

    def lines(self, name: str, labels: Mapping[str, str]) -> Iterable[str]:
        running = 0
        for upper, count in zip(self.buckets, self.counts, strict=True):
            running += count
            yield f"{name}_bucket{_labels({**labels, 'le': _num(upper)})} {running}"
        yield f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {self.total}"
        yield f"{name}_sum{_labels(labels)} {_num(self.sum)}"
        yield f"{name}_count{_labels(labels)} {self.total}"


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
        self._lock = threading.Lock()
        self._buckets = tuple(buckets)
        self._predict_paths = frozenset(predict_paths)
        self._requests: dict[tuple[str, int], int] = defaultdict(int)
        self._errors: dict[int, int] = defaultdict(int)
        self._durations: dict[str, _Histogram] = {}
        self._recent: deque[float] = deque(maxlen=window)
        self._inference = _Histogram(self._buckets)
        self._images = 0
        self._in_flight = 0
        self.info = dict(info or {})
        self.start_time = time.time()

    def request_started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def request_finished(self, path: str, code: int, seconds: float) -> None:
        """Record one answered request (``path`` already reduced to a known route)."""
        with self._lock:
            self._in_flight -= 1
            self._requests[(path, code)] += 1
            if code >= 400:
                self._errors[code] += 1
            hist = self._durations.get(path)
            if hist is None:
                hist = self._durations[path] = _Histogram(self._buckets)
            hist.observe(seconds)
            if path in self._predict_paths and code < 400:
                self._recent.append(seconds)

    def inference(self, images: int, seconds: float) -> None:
        """Record one model call over ``images`` images."""
        with self._lock:
            self._images += images
            self._inference.observe(seconds)

    def snapshot(self) -> dict[str, object]:
        """Plain numbers for tests and logs: totals, errors by code, latency quantiles."""
        with self._lock:
            recent = list(self._recent)
            return {
                "requests": sum(self._requests.values()),
                "errors": dict(self._errors),
                "images": self._images,
                "latency_s": {q: percentile(recent, q) for q in QUANTILES},
            }

    def render(self) -> str:
        """The Prometheus text exposition of every family."""
        with self._lock:
            out: list[str] = []

            def family(name: str, kind: str, help_text: str) -> None:
                out.append(f"# HELP {name} {help_text}")
                out.append(f"# TYPE {name} {kind}")

            family("cnnbench_requests_total", "counter", "Requests answered, by path and code.")
            for (path, code), n in sorted(self._requests.items()):
                out.append(
                    f"cnnbench_requests_total{_labels({'path': path, 'code': str(code)})} {n}"
                )
            family(
                "cnnbench_request_errors_total", "counter", "Requests answered with code >= 400."
            )
            for code, n in sorted(self._errors.items()):
                out.append(f"cnnbench_request_errors_total{_labels({'code': str(code)})} {n}")
            family(
                "cnnbench_request_duration_seconds",
                "histogram",
                "Whole request time on the server, by path.",
            )
            for path, hist in sorted(self._durations.items()):
                out.extend(hist.lines("cnnbench_request_duration_seconds", {"path": path}))
            recent = list(self._recent)
            family(
                "cnnbench_predict_latency_seconds",
                "summary",
                f"Successful prediction requests, last {self._recent.maxlen} of them.",
            )
            for q in QUANTILES:
                value = percentile(recent, q)
                text = "NaN" if math.isnan(value) else _num(value)
                out.append(
                    f"cnnbench_predict_latency_seconds{_labels({'quantile': str(q)})} {text}"
                )
            out.append(f"cnnbench_predict_latency_seconds_sum {_num(sum(recent))}")
            out.append(f"cnnbench_predict_latency_seconds_count {len(recent)}")
            family(
                "cnnbench_inference_duration_seconds",
                "histogram",
                "Model calls alone (one per batch of images).",
            )
            out.extend(self._inference.lines("cnnbench_inference_duration_seconds", {}))
            family("cnnbench_images_total", "counter", "Images classified.")
            out.append(f"cnnbench_images_total {self._images}")
            family("cnnbench_in_flight_requests", "gauge", "Requests being served now.")
            out.append(f"cnnbench_in_flight_requests {self._in_flight}")
            family("cnnbench_model_info", "gauge", "The served model (value is always 1).")
            out.append(f"cnnbench_model_info{_labels(self.info)} 1")
            family("cnnbench_start_time_seconds", "gauge", "Unix time the service started.")
            out.append(f"cnnbench_start_time_seconds {_num(round(self.start_time, 3))}")
            return "\n".join(out) + "\n"
