"""Batch-1 latency of the fast-response design space, before any training.

Latency does not depend on the weights, so the expensive half of the frontier search (which
architectures fit a latency budget on this CPU?) needs no training: this script builds each
candidate (FastNet widths, MobileNetV2 width multipliers, the CIFAR ResNets), exports it to
ONNX, and times ONNX Runtime fp32 at batch 1 on ONE thread, all candidates in one process,
round-robin (warm-up, then rounds of timed calls of each in turn; p50 / p99), so that the
host's drift hits every candidate alike; each is also given as a ratio to MobileNetV2 timed
in the same rounds. It prints the candidates sorted by p50 with
their MACs, and which fit 0.5 ms and 1.0 ms. Train the ones that fit (``cnnbench train
--recipe fast ...``) to put accuracy on the other axis.

    python benchmarks/frontier_latency.py                 # the default grid, ~2-4 minutes
    python benchmarks/frontier_latency.py --iters 3000    # steadier tails
    python benchmarks/frontier_latency.py fastnet:40,160,160 fastnet:32,128,128 resnet20

Run it on a quiet machine: load from other jobs moves these numbers (the load average is
printed).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

GRID: list[tuple[str, dict]] = [
    *[("fastnet", {"widths": [w1, w2, w2]})
      for w1 in (16, 24, 32) for w2 in (48, 64, 96, 128, 160)],
    ("fastnet", {"widths": [48, 192, 192]}),
    ("fastnet", {"widths": [64, 256, 256]}),
    ("mobilenetv2_x0_5", {}),
    ("mobilenetv2_x0_75", {}),
    ("mobilenetv2", {}),
    ("mobilenetv2_reduced", {}),
    ("resnet8", {}),
    ("resnet20", {}),
    ("lenet5_relu", {}),
]  # fmt: skip


def export_session(name: str, kwargs: dict, folder: Path):
    """Export one candidate to ONNX in ``folder``; an ORT session on ONE thread, and its costs."""
    import onnxruntime as ort
    import torch

    from cnnbench.models import create_model
    from cnnbench.profile import count_macs, count_params

    model = create_model(name, **kwargs).eval()
    x = torch.randn(1, 3, 32, 32)
    path = folder / f"{label({'name': name, 'kwargs': kwargs}).replace('/', '_')}.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"])  # fmt: skip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess, {"name": name, "kwargs": kwargs, "macs": count_macs(model),
                  "params": count_params(model)}  # fmt: skip


def measure_interleaved(grid: list[tuple[str, dict]], iters: int, warmup: int,
                        rounds: int) -> list[dict]:  # fmt: skip
    """p50 / p99 of every candidate, timed round-robin in one process.

    Each round times ``iters // rounds`` calls of every candidate in turn, so a host whose
    speed drifts, or a neighbour's burst of load, hits every candidate alike and their ratios
    hold even when the absolute figures move.
    """
    import numpy as np
    import torch

    torch.set_num_threads(1)
    feed = {"input": np.random.default_rng(0).standard_normal((1, 3, 32, 32), np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        built = [export_session(name, kwargs, Path(tmp)) for name, kwargs in grid]
        for sess, _ in built:
            for _ in range(warmup):
                sess.run(None, feed)
        times: list[list[float]] = [[] for _ in built]
        per_round = max(1, iters // rounds)
        for _ in range(rounds):
            for i, (sess, _) in enumerate(built):
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    sess.run(None, feed)
                    times[i].append(time.perf_counter() - t0)
    rows = []
    for (_, row), t in zip(built, times, strict=True):
        ms = np.array(t) * 1e3
        rows.append(row | {"p50_ms": float(np.percentile(ms, 50)),
                           "p99_ms": float(np.percentile(ms, 99)), "iters": len(t)})  # fmt: skip
    return rows


def parse_candidate(text: str) -> tuple[str, dict]:
    """``fastnet:40,160,160`` -> ("fastnet", {"widths": [40, 160, 160]}); ``resnet20`` -> {}."""
    name, _, widths = text.partition(":")
    return (name, {"widths": [int(w) for w in widths.split(",")]}) if widths else (name, {})


def label(row: dict) -> str:
    if row["name"] == "fastnet":
        return "fastnet " + "/".join(str(w) for w in row["kwargs"]["widths"])
    return row["name"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("candidates", nargs="*", type=parse_candidate,
                    help="NAME or fastnet:W1,W2,W3 (default: the whole grid)")  # fmt: skip
    ap.add_argument("--iters", type=int, default=1000, help="timed calls per candidate")
    ap.add_argument("--warmup", type=int, default=100, help="untimed calls first")
    ap.add_argument("--rounds", type=int, default=10, help="round-robin rounds (drift control)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    grid = args.candidates or GRID
    if ("mobilenetv2", {}) not in grid:
        grid = [*grid, ("mobilenetv2", {})]  # the reference every ratio is taken to
    load0 = os.getloadavg()[0]
    rows = measure_interleaved(grid, args.iters, args.warmup, args.rounds)
    ref = next(r["p50_ms"] for r in rows if r["name"] == "mobilenetv2" and not r["kwargs"])
    rows.sort(key=lambda r: r["p50_ms"])
    print(
        f"ONNX Runtime fp32, batch 1, 1 thread, {args.rounds} interleaved rounds; "
        f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'candidate':<28}{'MACs':>9}{'params':>11}{'p50 ms':>9}{'p99 ms':>9}{'/ mnv2':>8}  fits"
    )
    for r in rows:
        r["ratio_to_mobilenetv2"] = r["p50_ms"] / ref
        fits = "<=0.5 ms" if r["p50_ms"] <= 0.5 else "<=1.0 ms" if r["p50_ms"] <= 1.0 else ""
        print(
            f"{label(r):<28}{r['macs'] / 1e6:>8.1f}M{r['params']:>11,}{r['p50_ms']:>9.3f}"
            f"{r['p99_ms']:>9.3f}{r['ratio_to_mobilenetv2']:>7.2f}x  {fits}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
