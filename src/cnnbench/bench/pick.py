"""`cnnbench pick`: the most accurate model of a study whose measured latency fits a budget.

Accuracy is ``test_acc`` of each complete run's summary; latency is the fastest batch-1 result
of its benchmark file (any backend) on the device, at the thread count if one is given. Runs
that were never benchmarked are listed as not measured, never guessed. Run files are read
through ``cnnbench.rundir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.bench.errors import BenchError
from cnnbench.bench.latency import fastest
from cnnbench.rundir import BENCH, CONFIG, SUMMARY, RunDir

__all__ = ["METRICS", "find_runs", "format_pick", "pick"]

METRICS = ("p50", "p90", "p99", "mean")


def find_runs(study_dir: str | Path) -> list[Path]:
    """Every folder under ``study_dir`` (itself included) whose summary is a run's (it names
    a ``model``; a study's own summary does not)."""
    found = set()
    for path in Path(study_dir).rglob(SUMMARY):
        summary = RunDir(path.parent).summary()
        if summary is not None and "model" in summary:
            found.add(path.parent)
    return sorted(found)


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
    ``fits`` / ``over`` (measured), ``unmeasured`` (no usable benchmark), ``skipped``
    (incomplete runs or no test accuracy), with the reason.
    """
    if metric not in METRICS:
        raise BenchError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if budget_ms <= 0:
        raise BenchError(f"--budget-ms must be > 0, got {budget_ms}")
    root = Path(study_dir)
    if not root.is_dir():
        raise BenchError(f"{root} is not a folder")
    runs, configs = find_runs(root), sorted(root.rglob(CONFIG))
    if not runs and not configs:
        raise BenchError(f"no runs (folders with {SUMMARY}) under {root}")
    found: dict[str, list[dict[str, Any]]] = {
        "measured": [],
        "unmeasured": [],
        "skipped": _unfinished(root, configs),
    }
    for run in runs:
        kind, row = _classify(run, root, metric, device, threads)
        found[kind].append(row)
    fits = [r for r in found["measured"] if r["latency_ms"] <= budget_ms]
    over = [r for r in found["measured"] if r["latency_ms"] > budget_ms]
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
        "unmeasured": found["unmeasured"],
        "skipped": found["skipped"],
    }


def _unfinished(root: Path, configs: list[Path]) -> list[dict[str, Any]]:
    """Runs that started (config and metrics written) but have no summary yet."""
    rows = []
    for config in configs:
        run = RunDir(config.parent)
        if not run.summary_path.exists() and run.metrics_path.exists():
            rows.append(
                {
                    "run": str(run.path.relative_to(root)),
                    "path": str(run.path),
                    "reason": f"incomplete run (no {SUMMARY})",
                }
            )
    return rows


def _classify(
    run: Path, root: Path, metric: str, device: str, threads: int | None
) -> tuple[str, dict[str, Any]]:
    """("measured" | "unmeasured" | "skipped", the run's row) of one run with a summary."""
    name = str(run.relative_to(root)) if run != root else run.name
    summary = RunDir(run).summary()
    if summary is None or summary.get("status", "complete") != "complete":
        return "skipped", {"run": name, "path": str(run), "reason": "not a complete run"}
    acc = summary.get("test_acc")
    if not isinstance(acc, (int, float)):
        return "skipped", {"run": name, "path": str(run), "reason": f"no test_acc in {SUMMARY}"}
    row = {"run": name, "path": str(run), "model": summary.get("model"), "test_acc": acc}
    bench = RunDir(run).bench()
    best = fastest(bench, metric=metric, device=device, threads=threads) if bench else None
    if best is None:
        why = f"no {BENCH}" if bench is None else f"no {device} result in {BENCH}"
        if bench is not None and threads is not None:
            why = f"no {device} result with {threads} thread(s) in {BENCH}"
        return "unmeasured", {**row, "reason": why}
    return "measured", {
        **row,
        "latency_ms": best[f"{metric}_ms"],
        "backend": best["backend"],
        "threads": best["threads"],
        "device": best["device"],
    }


def _row(r: dict[str, Any], metric: str) -> str:
    return (
        f"{r['run']} ({r['model']}): test accuracy {r['test_acc']:.2%}, {metric} "
        f"{r['latency_ms']:.3f} ms ({r['backend']}, {r['threads']} thread(s), {r['device']})"
    )


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
        lines.append(
            f"no measured model fits {m} <= {budget:g} ms on {result['device']}; "
            f"closest: {_row(c, m)}, {c['latency_ms'] - budget:.3f} ms over"
        )
    else:
        lines.append(f"no run of {result['study']} has latency measurements on {result['device']}")
    if result["over"] and result["choice"] is not None:
        lines.append("over budget:")
        lines += [f"  {_row(r, m)}" for r in result["over"]]
    if result["unmeasured"]:
        lines.append("not measured (run `cnnbench bench <run>` to include them):")
        lines += [
            f"  {r['run']} ({r['model']}, test accuracy {r['test_acc']:.2%}): {r['reason']}"
            for r in result["unmeasured"]
        ]
    if result["skipped"]:
        lines.append("skipped:")
        lines += [f"  {r['run']}: {r['reason']}" for r in result["skipped"]]
    return "\n".join(lines)
