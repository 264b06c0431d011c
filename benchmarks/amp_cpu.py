"""bf16 autocast against float32 for training steps on this CPU, side by side.

On CPUs with bf16 matrix units (Intel AMX: Sapphire Rapids and later) oneDNN runs bf16
convolutions much faster than float32 ones; elsewhere bf16 is emulated and slower. This script
says which case a machine is in, for each model: it times real training steps (forward,
backward, SGD, channels_last, synthetic batches) alternating float32 and bf16 rounds, so that a
machine whose speed drifts, or a neighbour's load, hits both alike; it prints the median img/s
of each and their ratio. ``amp: auto`` (the trainer's default) turns bf16 on exactly where
``torch.cpu._is_amx_tile_supported()`` says the hardware has it.

Usage::

    python benchmarks/amp_cpu.py fastnet_small resnet20 mobilenetv2_x0_5 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from cnnbench.models import create_model
from cnnbench.train.precision import cpu_has_bf16_matmul


def step_rate(model, optimizer, x, y, dtype: torch.dtype | None, steps: int) -> float:
    """Images per second of ``steps`` training steps under autocast ``dtype`` (None: float32)."""

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: oneDNN picks and caches its kernels for this shape and dtype
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * x.shape[0] / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=5, help="alternating fp32/bf16 rounds")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"AMX bf16 units: {cpu_has_bf16_matmul()}; threads {args.threads}; "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| model | fp32 img/s | bf16 img/s | bf16 / fp32 |\n|---|---:|---:|---:|")
    for name in args.models:
        model = create_model(name).to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch_size, 3, 32, 32, generator=gen)
        x = x.to(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.batch_size,), generator=gen)
        rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            rates["fp32"].append(step_rate(model, optimizer, x, y, None, args.steps))
            rates["bf16"].append(step_rate(model, optimizer, x, y, torch.bfloat16, args.steps))
        fp32, bf16 = (statistics.median(rates[k]) for k in ("fp32", "bf16"))
        print(f"| {name} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f}x |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
