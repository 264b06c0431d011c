"""ONNX Runtime sessions and the numpy side of inference: normalisation, softmax, batches.

No torch import: the ONNX Runtime benchmark worker uses this module too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["normalize", "ort_session", "run_onnx", "softmax"]


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """A CPU ``InferenceSession``: all graph optimisations, sequential, fixed thread count.

    ``threads=None`` lets ONNX Runtime use every core. ``run`` on the session is thread-safe.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3  # no warnings about unused initializers on the console
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def normalize(x_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x / 255 - mean) / std`` per channel of a uint8 (N, C, H, W) array, float32."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((x_uint8.astype(np.float32) / np.float32(255.0)) - m) / s


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities of (N, classes) logits, float32 (computed in float64)."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def run_onnx(
    session: Any,
    x_uint8: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
) -> np.ndarray:
    """Logits (N, classes) of uint8 images through an ONNX Runtime session, in batches."""
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: normalize(x_uint8[i : i + batch_size], mean, std)})[0]
        for i in range(0, len(x_uint8), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
