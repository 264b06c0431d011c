"""`cnnbench pick`: the most accurate model of a study whose measured latency fits a budget.

Accuracy is ``test_acc`` of each complete run's ``summary.json``; latency is the fastest
batch-1 result of its ``bench.json`` (any backend) on the device, at the thread count if one
is given. Runs without a ``bench.json`` are listed as not measured, never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnbench.bench.errors import BenchError
from cnnbench.bench.latency import fastest

__all__ = ["METRICS", "find_runs", "format_pick", "pick"]

METRICS = ("p50", "p90", "p99", "mean")


def find_runs(study_dir: str | Path) -> list[Path]:
    """Every folder under ``study_dir`` (itself included) whose ``summary.json`` is a run's
    (it names a ``model``; a study's own summary does not)."""
    root = Path(study_dir)
    found = set()
    for p in root.rglob("summary.json"):
        data = _read_json(p) if p.is_file() else None
        if data is not None and "model" in data:
            found.add(p.parent)
    return sorted(found)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pick(
    study_dir: str | Path,
    budget_ms: float,
    *,
    metric: str = "p99",
    device: str = "cpu",
    threads: int | None = None,
) -> dict[str, Any]:
    """Choose among the runs of ``study_dir``; the result lists every run by category.

    ``choice``: the highest ``test_acc`` whose latency ``metric`` is <= ``budget_ms`` (ties:
    the faster one), or None; then ``closest``: the measured run with the lowest latency.
    ``fits`` / ``over`` (measured), ``unmeasured`` (no usable bench.json), ``skipped``
    (incomplete runs or no test accuracy), with the reason.
    """
    if metric not in METRICS:
        raise BenchError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if budget_ms <= 0:
        raise BenchError(f"--budget-ms must be > 0, got {budget_ms}")
    root = Path(study_dir)
    if not root.is_dir():
        raise BenchError(f"{root} is not a folder")
    runs = find_runs(root)
    if not runs and not any(root.rglob("config.yaml")):
        raise BenchError(f"no runs (folders with summary.json) under {root}")
    measured, unmeasured, skipped = [], [], []
    for cfg in sorted(root.rglob("config.yaml")):
        if not (cfg.parent / "summary.json").exists() and (cfg.parent / "metrics.jsonl").exists():
            skipped.append({"run": str(cfg.parent.relative_to(root)), "path": str(cfg.parent),
                            "reason": "incomplete run (no summary.json)"})  # fmt: skip
    for run in runs:
        name = str(run.relative_to(root)) if run != root else run.name
        summary = _read_json(run / "summary.json")
        if summary is None or summary.get("status", "complete") != "complete":
            skipped.append({"run": name, "path": str(run), "reason": "not a complete run"})
            continue
        acc = summary.get("test_acc")
        if not isinstance(acc, (int, float)):
            skipped.append({"run": name, "path": str(run), "reason": "no test_acc in summary.json"})
            continue
        row = {"run": name, "path": str(run), "model": summary.get("model"), "test_acc": acc}
        bench = _read_json(run / "bench.json")
        best = fastest(bench, metric=metric, device=device, threads=threads) if bench else None
        if best is None:
            why = "no bench.json" if bench is None else f"no {device} result in bench.json"
            if bench is not None and threads is not None:
                why = f"no {device} result with {threads} thread(s) in bench.json"
            unmeasured.append({**row, "reason": why})
            continue
        measured.append({**row, "latency_ms": best[f"{metric}_ms"], "backend": best["backend"],
                         "threads": best["threads"], "device": best["device"]})  # fmt: skip
    fits = [r for r in measured if r["latency_ms"] <= budget_ms]
    over = [r for r in measured if r["latency_ms"] > budget_ms]
    fits.sort(key=lambda r: (-r["test_acc"], r["latency_ms"]))
    over.sort(key=lambda r: r["latency_ms"])
    return {
        "study": str(root),
        "budget_ms": budget_ms,
        "metric": metric,
        "device": device,
        "threads": threads,
        "choice": fits[0] if fits else None,
        "closest": None if fits or not over else over[0],
        "fits": fits,
        "over": over,
        "unmeasured": unmeasured,
        "skipped": skipped,
    }


def _row(r: dict[str, Any], metric: str) -> str:
    return (f"{r['run']} ({r['model']}): test accuracy {r['test_acc']:.2%}, {metric} "
            f"{r['latency_ms']:.3f} ms ({r['backend']}, {r['threads']} thread(s), {r['device']})")  # fmt: skip


def format_pick(result: dict[str, Any]) -> str:
    """What ``cnnbench pick`` prints."""
    m, budget = result["metric"], result["budget_ms"]
    lines = []
    if result["choice"] is not None:
        lines.append(f"pick: {_row(result['choice'], m)} - fits the {budget:g} ms {m} budget")
        others = result["fits"][1:]
        if others:
            lines.append("also within budget (less accurate):")
            lines += [f"  {_row(r, m)}" for r in others]
    elif result["closest"] is not None:
        c = result["closest"]
        lines.append(f"no measured model fits {m} <= {budget:g} ms on {result['device']}; "
                     f"closest: {_row(c, m)}, {c['latency_ms'] - budget:.3f} ms over")  # fmt: skip
    else:
        lines.append(f"no run of {result['study']} has latency measurements on {result['device']}")
    if result["over"] and result["choice"] is not None:
        lines.append("over budget:")
        lines += [f"  {_row(r, m)}" for r in result["over"]]
    if result["unmeasured"]:
        lines.append("not measured (run `cnnbench bench <run>` to include them):")
        lines += [f"  {r['run']} ({r['model']}, test accuracy {r['test_acc']:.2%}): {r['reason']}"
                  for r in result["unmeasured"]]  # fmt: skip
    if result["skipped"]:
        lines.append("skipped:")
        lines += [f"  {r['run']}: {r['reason']}" for r in result["skipped"]]
    return "\n".join(lines)
