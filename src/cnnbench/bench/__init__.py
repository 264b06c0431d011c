"""Fast response: latency / MACs / memory per backend, depthwise-separable cost analysis,
ONNX export and int8, image prediction, and picking a model under a latency budget.

    from cnnbench.bench import measure, measure_run, latency_summary
    measure_run("runs/mnv2r", quick=True)     # writes runs/mnv2r/bench.json
    latency_summary("runs/mnv2r")            # {"p50_ms", "p99_ms", "backend", "threads", ...}

Names are imported lazily (on first use), so ``python -m cnnbench.bench._worker`` for an
ONNX Runtime measurement never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BenchError": "cnnbench.bench.errors",
    "BACKENDS": "cnnbench.bench.latency",
    "measure": "cnnbench.bench.latency",
    "measure_run": "cnnbench.bench.latency",
    "latency_summary": "cnnbench.bench.latency",
    "format_report": "cnnbench.bench.latency",
    "separable_cost": "cnnbench.bench.cost",
    "format_cost": "cnnbench.bench.cost",
    "export_onnx": "cnnbench.bench.export",
    "quantize_int8": "cnnbench.bench.export",
    "export_run": "cnnbench.bench.export",
    "ImageError": "cnnbench.bench.predict",
    "Predictor": "cnnbench.bench.predict",
    "load_image": "cnnbench.bench.predict",
    "pick": "cnnbench.bench.pick",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnbench.bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
