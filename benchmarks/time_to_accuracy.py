"""Time to accuracy: how fast each model learns CIFAR with a recipe, on this machine.

For each ``MODEL[:key=value,...]`` spec it runs (or resumes, or reuses if complete)
``cnnbench train --recipe fast --model MODEL --name ... <options>`` as a subprocess, then reads
the run directory and prints one row per run:

- the training wall time (``fit_time_s``: steps + validation, the time the budget counts) at
  which the validation accuracy (of the weights that are selected, the EMA's when there is
  one) first reached each threshold;
- the final test accuracy of the validation-selected checkpoint with its standard error, the
  same with TTA, and the number of TTA views (its inference cost);
- training img/s, epochs, and the machine's load average while it ran.

Usage (the zoo's CIFAR-10 runs; long: run it with nohup, it resumes where it stopped)::

    python benchmarks/time_to_accuracy.py --runs-dir runs/zoo \\
        fastnet_small:epochs=16 fastnet_base:epochs=12 resnet20:budget-minutes=15

The training loop's img/s against the common torchvision loop is measured by
``benchmarks/train_throughput.py`` (same machine, interleaved runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

THRESHOLDS = (0.80, 0.85, 0.90, 0.92, 0.94)  # validation accuracy


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: ``a=1,model-arg=widths=[8,16,16]`` -> two items."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item]


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``model:key=value,key=value`` -> (model, {key: value}); lists go in brackets."""
    model, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for item in _split_top_level(rest):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bad option {item!r} in {spec!r}: expected key=value")
        options[key.strip()] = value.strip()
    return model, options


def run_name(model: str, options: dict[str, str]) -> str:
    parts = [model] + [f"{k.replace('-', '_')}{v}" for k, v in sorted(options.items())
                       if k not in ("model-arg", "threads")]  # fmt: skip
    if "model-arg" in options:  # the architecture's arguments name it: widths=[40,160,160]
        parts.insert(1, options["model-arg"].replace(",", "_").strip("[]"))
    table = str.maketrans({c: "" for c in "=[] "} | {"/": "_"})
    return "-".join(p.translate(table) for p in parts)


def train_command(model: str, options: dict[str, str], runs_dir: Path, recipe: str) -> list[str]:
    cmd = [sys.executable, "-m", "cnnbench", "train", "--recipe", recipe, "--model", model,
           "--runs-dir", str(runs_dir), "--name", run_name(model, options), "--resume"]  # fmt: skip
    for key, value in options.items():
        cmd += [f"--{key}", value]
    return cmd


def time_to(rows: list[dict], threshold: float) -> float | None:
    """Cumulative epoch time (train + validation) when val_acc first reached ``threshold``."""
    elapsed = 0.0
    for r in rows:
        elapsed += r["epoch_time_s"] + r.get("val_time_s", 0.0)
        if r["val_acc"] >= threshold:
            return elapsed
    return None


def table(runs: list[Path]) -> str:
    head = ["run", "precision", "epochs", "img/s"] + [f"t({t:.0%})" for t in THRESHOLDS]
    head += ["test %", "test+TTA %", "views", "fit min", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        times = [time_to(rows, t) for t in THRESHOLDS]
        se = s.get("test_acc_se") or 0.0
        tta = s.get("test_acc_tta")
        tta_s = f"{tta:.2%} ± {s['test_acc_tta_se']:.2%}" if tta is not None else "-"
        load = s.get("load_average")
        precision = s.get("train_precision", "float32")  # runs before the field: float32 on CPU
        cells = [run.name, precision, str(s["epochs"]), f"{s['images_per_s']:.0f}"]
        cells += [f"{t / 60:.1f} min" if t is not None else "-" for t in times]
        cells += [f"{s['test_acc']:.2%} ± {se:.2%}", tta_s, str(s.get("tta_views", 1)),
                  f"{s.get('fit_time_s', s['train_time_s']) / 60:.1f}",
                  f"{load:.1f}" if load is not None else "?"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+", help="MODEL[:key=value,...] (train options without --)")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/time-to-accuracy"))
    ap.add_argument("--recipe", default="fast", help="recipe of every run (default: fast)")
    ap.add_argument("--report-only", action="store_true", help="train nothing; print the table")
    args = ap.parse_args(argv)
    runs, failed = [], []
    for spec in args.specs:
        model, options = parse_spec(spec)
        run = args.runs_dir / run_name(model, options)
        runs.append(run)
        if args.report_only:
            continue
        cmd = train_command(model, options, args.runs_dir, args.recipe)
        print(
            "$", shlex.join(["cnnbench", *cmd[3:]]), f"(load {os.getloadavg()[0]:.1f})", flush=True
        )
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL)
        if done.returncode != 0:  # go on with the queue: one bad spec must not cost the rest
            print(f"{run.name}: exit code {done.returncode}", file=sys.stderr)
            failed.append(run.name)
    print(table([r for r in runs if (r / "summary.json").is_file()]))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
