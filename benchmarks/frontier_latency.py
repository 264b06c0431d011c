"""Batch-1 latency of the fast-response design space, before any training.

Latency does not depend on the weights, so the expensive half of the frontier search (which
architectures fit a latency budget on this CPU?) needs no training: this script builds each
candidate (FastNet widths, MobileNetV2 width multipliers, the CIFAR ResNets), exports it to
ONNX, and times ONNX Runtime fp32 at batch 1 on ONE thread, each candidate in a fresh
process (warm-up, then timed calls; p50 / p99). It prints the candidates sorted by p50 with
their MACs, and which fit 0.5 ms and 1.0 ms. Train the ones that fit (``cnnbench train
--recipe fast ...``) to put accuracy on the other axis.

    python benchmarks/frontier_latency.py                 # the default grid, ~2-4 minutes
    python benchmarks/frontier_latency.py --iters 3000    # steadier tails

Run it on a quiet machine: load from other jobs moves these numbers (the load average is
printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


def measure_one(name: str, kwargs: dict, iters: int, warmup: int) -> dict:
    """Export one candidate and time it with ONNX Runtime, 1 thread, batch 1 (this process)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from cnnbench.models import create_model
    from cnnbench.profile import count_macs, count_params

    torch.set_num_threads(1)
    model = create_model(name, **kwargs).eval()
    x = torch.randn(1, 3, 32, 32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"])  # fmt: skip
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {"input": x.numpy()}
        for _ in range(warmup):
            sess.run(None, feed)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"name": name, "kwargs": kwargs, "macs": count_macs(model),
            "params": count_params(model), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "iters": iters}  # fmt: skip


def label(row: dict) -> str:
    if row["name"] == "fastnet":
        return "fastnet " + "/".join(str(w) for w in row["kwargs"]["widths"])
    return row["name"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=1000, help="timed calls per candidate")
    ap.add_argument("--warmup", type=int, default=100, help="untimed calls first")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: child mode
    args = ap.parse_args(argv)
    if args.one is not None:
        name, kwargs = json.loads(args.one)
        print(json.dumps(measure_one(name, kwargs, args.iters, args.warmup)))
        return 0
    rows = []
    load0 = os.getloadavg()[0]
    for name, kwargs in GRID:
        cmd = [sys.executable, __file__, "--one", json.dumps([name, kwargs]),
               "--iters", str(args.iters), "--warmup", str(args.warmup)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    rows.sort(key=lambda r: r["p50_ms"])
    print(f"ONNX Runtime fp32, batch 1, 1 thread; load average {load0:.2f} -> "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'candidate':<28}{'MACs':>9}{'params':>11}{'p50 ms':>9}{'p99 ms':>9}  fits")
    for r in rows:
        fits = "<=0.5 ms" if r["p50_ms"] <= 0.5 else "<=1.0 ms" if r["p50_ms"] <= 1.0 else ""
        print(f"{label(r):<28}{r['macs'] / 1e6:>8.1f}M{r['params']:>11,}{r['p50_ms']:>9.3f}"
              f"{r['p99_ms']:>9.3f}  {fits}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
