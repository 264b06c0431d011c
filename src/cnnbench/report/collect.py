"""Read a study's folder into plain records: runs, their seed groups, costs, extras.

Nothing here draws or formats; it only reads what the trainer and ``cnnbench.bench`` wrote
into each run directory (through ``cnnbench.rundir``: summary, metrics, config, latency), the
study runner's ``study.yaml`` and ``cnnbench.explore``'s ``explore/explore.json``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnbench.rundir import RunDir
from cnnbench.study.runner import STUDY_FILE
from cnnbench.study.spec import EXECUTION_KEYS

# The study's shape: these columns always lead the results table, in this order.
SHAPE_KEYS = ("model", "optimizer", "lr", "dataset", "epochs")
# Table 1 of the paper cnnbench starts from: (model, optimizer, lr) -> CIFAR-10 test accuracy %.
PAPER_TABLE1: tuple[tuple[str, str, float, float], ...] = (
    ("resnet34", "sgd", 0.1, 75.5),
    ("lenet5", "adam", 0.001, 63.0),
    ("mobilenetv2_reduced", "adadelta", 0.1, 76.25),
    ("mobilenetv2_reduced", "adam", 0.1, 28.95),
    ("mobilenetv2_reduced", "sgd", 0.1, 66.56),
    ("mobilenetv2_reduced", "adadelta", 0.01, 62.67),
    ("mobilenetv2_reduced", "adam", 0.01, 82.07),
    ("mobilenetv2_reduced", "sgd", 0.01, 83.27),
)


@dataclass
class RunRecord:
    """One complete run: its resolved config, summary, per-epoch metrics, latency if timed."""

    name: str
    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    latency: dict[str, Any] | None = None


@dataclass
class Group:
    """Runs that differ only by seed: one row of the results table."""

    settings: dict[str, Any]  # the shape keys + every other varied setting, seed excluded
    runs: list[RunRecord]

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.runs:
            v = r.summary.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                out.append(float(v))
        return out

    def mean(self, key: str) -> float | None:
        vals = self.values(key)
        return statistics.fmean(vals) if vals else None

    def std(self, key: str) -> float | None:
        vals = self.values(key)
        return statistics.stdev(vals) if len(vals) > 1 else None

    def latency(self, key: str) -> float | None:
        vals = [float(r.latency[key]) for r in self.runs if r.latency and r.latency.get(key)]
        return statistics.median(vals) if vals else None

    @property
    def cost_latency(self) -> float | None:
        return self.latency("p50_ms")

    @property
    def label(self) -> str:
        """Short human name: ``mobilenetv2_reduced · sgd · lr 0.01`` (+ other varied settings)."""
        s = self.settings
        parts = [str(s["model"]), str(s["optimizer"]), f"lr {s['lr']:g}"]
        parts += [f"{k} {_short(v)}" for k, v in s.items() if k not in SHAPE_KEYS]
        return " · ".join(parts)


@dataclass
class StudyData:
    """Everything the report shows, read from ``<runs>/<study>/``."""

    name: str
    path: Path
    source: str | None
    description: str
    command: str | None
    varied: list[str]
    runs: list[RunRecord]
    groups: list[Group]
    missing: list[str] = field(default_factory=list)  # runs of study.yaml not complete yet
    explore: dict[str, Any] | None = None

    @property
    def has_latency(self) -> bool:
        return bool(self.groups) and all(g.cost_latency is not None for g in self.groups)

    @property
    def columns(self) -> list[str]:
        """The table's setting columns: the study's shape, then other varied settings."""
        extra = [k for k in self.varied if k not in SHAPE_KEYS and k != "seed"]
        return [*SHAPE_KEYS, *extra]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items()) or "{}"
    return str(value)


def _latency_summary(run_dir: Path) -> dict[str, Any] | None:
    if not RunDir(run_dir).bench_path.is_file():
        return None
    try:
        from cnnbench.bench import latency_summary
    except (ImportError, AttributeError):
        return None
    try:
        return latency_summary(run_dir)
    except (OSError, ValueError, KeyError):
        return None


def read_run(run_dir: Path) -> RunRecord | None:
    """A complete run's record, or None if the run has not finished."""
    run = RunDir(run_dir)
    summary = run.summary()
    if not summary or summary.get("status") != "complete":
        return None
    config = run.config() or {}
    for key in (*SHAPE_KEYS, "seed"):  # old or hand-made runs: fall back to the summary
        config.setdefault(key, summary.get(key))
    return RunRecord(
        name=run_dir.name,
        path=run_dir,
        config=config,
        summary=summary,
        metrics=run.metrics(),  # a torn last line (killed mid-write) is skipped
        latency=_latency_summary(run_dir),
    )


def _varied(configs: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for c in configs for k in c} - EXECUTION_KEYS)
    return [k for k in keys if len({yaml.safe_dump(c.get(k)) for c in configs}) > 1]


def group_runs(runs: list[RunRecord], varied: list[str]) -> list[Group]:
    """Seed groups, in the order their first run appears."""
    extra = [k for k in varied if k not in SHAPE_KEYS and k != "seed"]
    groups: dict[str, Group] = {}
    for run in runs:
        settings = {k: run.config.get(k) for k in (*SHAPE_KEYS, *extra)}
        key = yaml.safe_dump(settings, sort_keys=True)
        groups.setdefault(key, Group(settings=settings, runs=[])).runs.append(run)
    return list(groups.values())


def load_study_data(path: str | Path) -> StudyData:
    """Read a study folder (``study.yaml`` + run folders), or any folder of run folders."""
    path = Path(path)
    spec: dict[str, Any] = {}
    if (path / STUDY_FILE).is_file():
        spec = yaml.safe_load((path / STUDY_FILE).read_text()) or {}
    names = [c["name"] for c in spec.get("runs", []) if c.get("name")]
    if not names:
        names = sorted(p.name for p in path.iterdir() if RunDir(p).config_path.is_file())
    runs, missing = [], []
    for name in names:
        record = read_run(path / name)
        (runs.append(record) if record else missing.append(name))
    varied = spec.get("varied") or _varied([r.config for r in runs])
    explore = None
    explore_file = path / "explore" / "explore.json"
    if explore_file.is_file():
        try:
            explore = json.loads(explore_file.read_text())
        except (OSError, json.JSONDecodeError):
            explore = None
    return StudyData(
        name=spec.get("name") or path.name,
        path=path,
        source=spec.get("source"),
        description=spec.get("description") or "",
        command=spec.get("command"),
        varied=list(varied),
        runs=runs,
        groups=group_runs(runs, list(varied)),
        missing=missing,
        explore=explore if isinstance(explore, dict) else None,
    )


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher),
    ordered by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def paper_match(group: Group) -> float | None:
    """The paper's Table 1 accuracy (%) for this group's setting, if it has one."""
    s = group.settings
    if str(s.get("dataset", "")).split(":", 1)[0] != "cifar10":
        return None
    for model, opt, lr, acc in PAPER_TABLE1:
        if s["model"] == model and s["optimizer"] == opt and math.isclose(float(s["lr"]), lr):
            return acc
    return None


def resolve_parent(parent: str, study_path: Path) -> Path | None:
    """The parent run directory a transfer run names (absolute, or relative to cwd/study)."""
    candidates = [Path(parent)]
    if not Path(parent).is_absolute():
        candidates += [study_path / parent, study_path.parent / parent]
    for c in candidates:
        c = c.parent if c.suffix == ".pt" else c
        if RunDir(c).summary_path.is_file():
            return c
    return None
