"""Fast response, measured: latency / MACs / memory per backend, the depthwise-separable cost
analysis, and picking a model under a latency budget.

    from cnnbench.bench import measure, measure_run, latency_summary
    measure_run("runs/mnv2r", quick=True)     # writes runs/mnv2r/bench.json
    latency_summary("runs/mnv2r")            # {"p50_ms", "p99_ms", "backend", "threads", ...}

Making the ONNX files is ``cnnbench.export``'s and running them ``cnnbench.inference``'s;
their names stay importable from here (``export_run``, ``Predictor``, ``load_image``...).
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
    "measure_matmul_peak": "cnnbench.bench.latency",
    "measure_run": "cnnbench.bench.latency",
    "latency_summary": "cnnbench.bench.latency",
    "format_report": "cnnbench.bench.latency",
    "separable_cost": "cnnbench.bench.cost",
    "format_cost": "cnnbench.bench.cost",
    "pick": "cnnbench.bench.pick",
    # Re-exported from their own rooms (the names this package had before issue 12).
    "export_onnx": "cnnbench.export",
    "quantize_int8": "cnnbench.export",
    "export_run": "cnnbench.export",
    "ImageError": "cnnbench.inference",
    "Predictor": "cnnbench.inference",
    "load_image": "cnnbench.inference",
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
