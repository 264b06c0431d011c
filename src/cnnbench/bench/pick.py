"""`cnnbench pick`: the most accurate model of a study whose measured latency fits a budget.

Accuracy is ``test_acc`` of each complete run's summary; latency is the fastest batch-1 result
of its benchmark file (any backend) on the device, at the thread count if one is given. Runs
that were never benchmarked are listed as not measured, never guessed; runs that did not
learn (``cnnbench.verdict``) are skipped, never picked. With ``zoo=True`` the shipped zoo
models trained on the study's dataset(s) compete too, marked ``zoo`` (a zoo entry is a run
directory with a benchmark file). With ``min_corrupted_acc``, only runs whose mean corruption
accuracy (``cnnbench robustness``: robustness.json, or a zoo card's) reaches it compete; the
others, and runs never measured for robustness, are skipped with the reason. Run files are
read through ``cnnbench.rundir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.bench.errors import BenchError
from cnnbench.bench.latency import fastest
from cnnbench.robustness.protocol import ROBUSTNESS
from cnnbench.robustness.results import corrupted_accuracy
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
    zoo: bool = True,
    min_corrupted_acc: float | None = None,
) -> dict[str, Any]:
    """Choose among the runs of ``study_dir`` (and, with ``zoo``, the zoo's models of the
    same dataset); the result lists every candidate by category.

    ``choice``: the highest ``test_acc`` whose latency ``metric`` is <= ``budget_ms`` (ties:
    the faster one), or None; then ``closest``: the measured run with the lowest latency.
    ``fits`` / ``over`` (measured), ``unmeasured`` (no usable benchmark), ``skipped``
    (incomplete runs, no test accuracy, or did not learn), with the reason. Every row has
    ``source`` ("study" or "zoo") and ``serve``, the command that serves it.
    """
    if metric not in METRICS:
        raise BenchError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if budget_ms <= 0:
        raise BenchError(f"--budget-ms must be > 0, got {budget_ms}")
    if min_corrupted_acc is not None and not 0 <= min_corrupted_acc <= 1:
        raise BenchError(
            f"--min-corrupted-acc is a fraction in [0, 1] (0.7 for 70 %), got {min_corrupted_acc}"
        )
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
    candidates = [(run, None) for run in runs]
    if zoo:
        candidates += [(path, name) for name, path in _zoo_entries(_datasets(runs))]
    for run, name in candidates:
        kind, row = _classify(run, root, metric, device, threads, zoo_name=name)
        if kind != "skipped":
            kind, row = _robust_enough(kind, row, min_corrupted_acc)
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
        "zoo": zoo,
        "min_corrupted_acc": min_corrupted_acc,
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


def _datasets(runs: list[Path]) -> set[str]:
    """The datasets the study's runs trained on."""
    out = set()
    for run in runs:
        summary = RunDir(run).summary() or {}
        if summary.get("dataset"):
            out.add(str(summary["dataset"]))
    return out


def _zoo_entries(datasets: set[str]) -> list[tuple[str, Path]]:
    """(name, folder) of every shipped zoo model trained on one of ``datasets``."""
    from cnnbench import zoo

    if not datasets or not zoo.root().is_dir():
        return []
    out = []
    for name in zoo.names():
        path = zoo.find(name)
        card = RunDir(path).zoo_card() if path is not None else None
        if path is not None and card is not None and str(card.get("dataset")) in datasets:
            out.append((name, path))
    return out


def _learn_verdict(summary: dict[str, Any]) -> str | None:
    """Why the run did not learn (its summary's verdict, computed for older summaries)."""
    from cnnbench.verdict import recorded_verdict

    return recorded_verdict(
        summary, {"cifar10": 10, "cifar100": 100}.get(str(summary.get("dataset")))
    )


def _classify(
    run: Path,
    root: Path,
    metric: str,
    device: str,
    threads: int | None,
    zoo_name: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """("measured" | "unmeasured" | "skipped", the run's row) of one run with a summary (or
    of zoo model ``zoo_name``, whose folder is ``run``)."""
    if zoo_name is not None:
        name, source, serve = f"zoo:{zoo_name}", "zoo", f"cnnbench serve {zoo_name}"
    else:
        name = str(run.relative_to(root)) if run != root else run.name
        source, serve = "study", f"cnnbench serve {run}"
    base = {"run": name, "path": str(run), "source": source}
    summary = RunDir(run).summary()
    if summary is None or summary.get("status", "complete") != "complete":
        return "skipped", {**base, "reason": "not a complete run"}
    acc = summary.get("test_acc")
    if not isinstance(acc, (int, float)):
        return "skipped", {**base, "reason": f"no test_acc in {SUMMARY}"}
    failed = _learn_verdict(summary)
    if failed:
        return "skipped", {**base, "reason": f"did not learn: {failed}"}
    row = {**base, "model": summary.get("model"), "test_acc": acc, "serve": serve}
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


def _robust_enough(
    kind: str, row: dict[str, Any], minimum: float | None
) -> tuple[str, dict[str, Any]]:
    """The row with its mean corruption accuracy; "skipped" when it is below ``minimum`` or,
    with a minimum, unknown."""
    mca = corrupted_accuracy(row["path"])
    if mca is not None:
        row = {**row, "corrupted_acc": mca}
    if minimum is None:
        return kind, row
    if mca is None:
        target = row["run"].removeprefix("zoo:") if row.get("source") == "zoo" else row["path"]
        why = f"no {ROBUSTNESS} (run `cnnbench robustness {target}`), needed by --min-corrupted-acc"
        return "skipped", {**row, "reason": why}
    if mca < minimum:
        why = f"mean corruption accuracy {mca:.2%} < {minimum:.2%}"
        return "skipped", {**row, "reason": why}
    return kind, row


def _row(r: dict[str, Any], metric: str) -> str:
    zoo = ", zoo" if r.get("source") == "zoo" else ""
    mca = f", corrupted {r['corrupted_acc']:.2%}" if r.get("corrupted_acc") is not None else ""
    return (
        f"{r['run']} ({r['model']}{zoo}): test accuracy {r['test_acc']:.2%}{mca}, {metric} "
        f"{r['latency_ms']:.3f} ms ({r['backend']}, {r['threads']} thread(s), {r['device']})"
    )


def format_pick(result: dict[str, Any]) -> str:
    """What ``cnnbench pick`` prints."""
    m, budget = result["metric"], result["budget_ms"]
    lines = []
    if result["choice"] is not None:
        robust = result.get("min_corrupted_acc")
        also = f" and mean corruption accuracy >= {robust:.2%}" if robust is not None else ""
        lines.append(f"pick: {_row(result['choice'], m)} - fits the {budget:g} ms {m} budget{also}")
        lines.append(f"serve it: {result['choice']['serve']}")
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
            f"  {r['run']} ({r['model']}{', zoo' if r.get('source') == 'zoo' else ''}, "
            f"test accuracy {r['test_acc']:.2%}): {r['reason']}"
            for r in result["unmeasured"]
        ]
    if result["skipped"]:
        lines.append("skipped:")
        lines += [f"  {r['run']}: {r['reason']}" for r in result["skipped"]]
    return "\n".join(lines)
