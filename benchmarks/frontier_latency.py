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


def measure_interleaved(grid: list[tuple[str, dict]], iters: int, warmup: int,
                        rounds: int) -> list[dict]:  # fmt: skip
    """p50 / p99 of every candidate (exported to ONNX, one ORT thread), timed round-robin in
    one process by ``cnnbench.bench.interleaved.time_interleaved``: a host whose speed drifts,
    or a neighbour's burst of load, hits every candidate alike, so their ratios hold even when
    the absolute figures move."""
    import torch

    from cnnbench.bench.interleaved import ort_session, time_interleaved
    from cnnbench.export.onnx import export_onnx
    from cnnbench.models import create_model
    from cnnbench.profile import count_macs, count_params

    torch.set_num_threads(1)
    rows, sessions = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, kwargs) in enumerate(grid):
            model = create_model(name, **kwargs).eval()
            rows.append({"name": name, "kwargs": kwargs, "macs": count_macs(model),
                         "params": count_params(model)})  # fmt: skip
            sessions[str(i)] = ort_session(export_onnx(model, Path(tmp) / f"{i}.onnx"))
        stats = time_interleaved(sessions, iters=iters, warmup=warmup, rounds=rounds)
    return [row | {k: stats[str(i)][k] for k in ("p50_ms", "p99_ms", "iters")}
            for i, row in enumerate(rows)]  # fmt: skip


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
