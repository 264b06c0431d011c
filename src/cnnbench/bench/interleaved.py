"""Batch-1 latency of several ONNX models timed round-robin in one process.

A latency taken alone moves with the host: the same zoo entry measured 0.37 ms and then
0.50 ms two minutes later on a shared 2-core VM. Timed in turns with a reference model,
the ratio holds where the absolute figure does not, because a drift or a neighbour's burst
of load hits every model alike. ``benchmarks/frontier_latency.py`` times a design space this
way; ``cnnbench zoo measure`` times each entry against the CIFAR-stride MobileNetV2 (the
reference the frontier is stated against: "about 0.3x its latency in the same run").

    sessions = {"mine": ort_session("m.onnx"), "mobilenetv2": ort_session("ref.onnx")}
    stats = time_interleaved(sessions, iters=1000, warmup=100, rounds=10)
    stats["mine"]["p50_ms"] / stats["mobilenetv2"]["p50_ms"]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnbench.bench._timing import latency_stats

__all__ = ["REFERENCE_MODEL", "ort_session", "reference_ratio", "time_interleaved"]

REFERENCE_MODEL = "mobilenetv2"  # CIFAR-stride MobileNetV2 (1.0x), ~3 ms fp32 on one core here


def ort_session(path: str | Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (and one inter-op)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def time_interleaved(
    sessions: Mapping[str, Any],
    *,
    iters: int,
    warmup: int,
    rounds: int,
    input_shape: Sequence[int] = (1, 3, 32, 32),
) -> dict[str, dict[str, float | int]]:
    """Latency statistics (``latency_stats``) of each session, timed in ``rounds`` turns.

    Every session first gets ``warmup`` untimed calls; then each round times
    ``iters // rounds`` calls of every session in turn, in the mapping's order. One fixed
    random input (seed 0) of ``input_shape`` feeds every call.
    """
    import numpy as np

    if not sessions:
        raise ValueError("no sessions to time")
    if rounds < 1 or iters < rounds or warmup < 0:
        raise ValueError(f"need 1 <= rounds <= iters and warmup >= 0, got iters={iters}, "
                         f"rounds={rounds}, warmup={warmup}")  # fmt: skip
    x = np.random.default_rng(0).standard_normal(tuple(input_shape)).astype(np.float32)
    feeds = {label: {s.get_inputs()[0].name: x} for label, s in sessions.items()}
    for label, sess in sessions.items():
        for _ in range(warmup):
            sess.run(None, feeds[label])
    times: dict[str, list[float]] = {label: [] for label in sessions}
    per_round = iters // rounds
    for _ in range(rounds):
        for label, sess in sessions.items():
            feed, out = feeds[label], times[label]
            for _ in range(per_round):
                t0 = time.perf_counter()
                sess.run(None, feed)
                out.append(time.perf_counter() - t0)
    return {label: latency_stats(t) for label, t in times.items()}


def reference_ratio(
    model: Any,
    *,
    input_size: Sequence[int] = (3, 32, 32),
    reference: str = REFERENCE_MODEL,
    iters: int = 2000,
    warmup: int = 100,
    rounds: int = 10,
) -> dict[str, Any]:
    """``model``'s ONNX Runtime fp32 batch-1 p50 on one thread as a fraction of
    ``reference``'s (untrained: latency does not depend on the weights), the two timed in
    turns in this process. Returns both p50s, the ratio and how it was timed."""
    import tempfile

    from cnnbench.export.onnx import export_onnx
    from cnnbench.models import create_model

    ref_model = create_model(reference, num_classes=getattr(model, "num_classes", 10))
    with tempfile.TemporaryDirectory(prefix="cnnbench-ratio-") as tmp:
        sessions = {
            "model": ort_session(export_onnx(model, Path(tmp) / "model.onnx",
                                             input_size=input_size)),
            "reference": ort_session(export_onnx(ref_model, Path(tmp) / "reference.onnx",
                                                 input_size=input_size)),
        }  # fmt: skip
        stats = time_interleaved(sessions, iters=iters, warmup=warmup, rounds=rounds,
                                 input_shape=(1, *input_size))  # fmt: skip
    mine, ref = stats["model"], stats["reference"]
    return {
        "reference": reference,
        "p50_ms": mine["p50_ms"],
        "p99_ms": mine["p99_ms"],
        "reference_p50_ms": ref["p50_ms"],
        "reference_p99_ms": ref["p99_ms"],
        "ratio": mine["p50_ms"] / ref["p50_ms"],
        "iters": mine["iters"],
        "rounds": rounds,
        "backend": "onnxruntime fp32, batch 1, 1 thread",
    }
