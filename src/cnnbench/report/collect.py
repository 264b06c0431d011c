"""Read a study's folder into plain records: runs, their seed groups, costs, extras.

Nothing here draws or formats; it only reads what the trainer and ``cnnbench.bench`` wrote
into each run directory (through ``cnnbench.rundir``: summary, metrics, config, latency), the
study runner's ``study.yaml``, ``cnnbench.explore``'s ``explore/explore.json``, and the
shipped zoo's cards (``cnnbench.zoo``) for models of the study's datasets.

Latency is batch 1 on the CPU with one thread, per backend (``latencies``); the figure a run
is placed at (``latency``) is ONNX Runtime fp32 when measured (what ``cnnbench serve`` runs),
else the fastest backend measured, and always says which. A run "did not learn" when its
summary says so (``cnnbench.verdict``, computed here for summaries that predate the key).
A run's mean corruption accuracy (``mca``) comes from its ``robustness.json``
(``cnnbench robustness``), a zoo model's from its card.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnbench.robustness.results import read_robustness
from cnnbench.rundir import RunDir
from cnnbench.study.runner import STUDY_BENCH, STUDY_FILE
from cnnbench.study.spec import EXECUTION_KEYS
from cnnbench.zoo import find as zoo_find

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
# Latency budgets of the recommendation: p50 in ms, batch 1, one CPU thread.
LATENCY_BUDGETS_MS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
# The backends the recommendation chooses between (what the study measures), in this order.
SHIP_BACKENDS: tuple[str, ...] = tuple(STUDY_BENCH["backends"])
# The backend a run is placed at on the latency axis when measured: the one `cnnbench serve`
# runs, whose accuracy is the run's own test accuracy.
COST_BACKEND = "onnxruntime"
BACKEND_NAMES = {
    "onnxruntime": "ORT fp32",
    "onnxruntime-int8": "ORT int8",
    "eager": "PyTorch eager",
    "torchscript": "TorchScript",
}
_BACKEND_ORDER = ("onnxruntime", "onnxruntime-int8", "eager", "torchscript")
_CLASSES = {"cifar10": 10, "cifar100": 100}


def standard_error(acc: float | None, n: int | None) -> float | None:
    """Binomial standard error of an accuracy measured on ``n`` images."""
    if acc is None or not n or n <= 0 or not math.isfinite(acc):
        return None
    return math.sqrt(max(acc * (1 - acc), 0.0) / n)


def backend_name(backend: str | None) -> str:
    """``ORT fp32`` for ``onnxruntime``, and so on (unknown names as they are)."""
    return BACKEND_NAMES.get(str(backend), str(backend))


def backend_order(backends: set[str]) -> list[str]:
    """Backends in the report's order: ORT fp32, ORT int8, eager, TorchScript, then others."""
    return sorted(backends, key=lambda b: (*_BACKEND_ORDER, b).index(b))


def _finite(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


@dataclass
class RunRecord:
    """One complete run: its resolved config, summary, per-epoch metrics, latency if timed.

    ``latencies``: backend -> ``{"p50_ms", "p99_ms"}`` at batch 1, one CPU thread.
    ``latency``: the figure the run is placed at (``{"p50_ms", "p99_ms", "backend",
    "threads", "device"}``): ORT fp32 if measured, else the fastest backend. ``int8_acc``:
    the int8 ONNX model's test accuracy when ``cnnbench export --int8`` measured it.
    ``did_not_learn``: None, or why the run did not learn. ``robustness``: the run's
    robustness.json (``cnnbench robustness``), or None.
    """

    name: str
    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    latency: dict[str, Any] | None = None
    latencies: dict[str, dict[str, float]] = field(default_factory=dict)
    int8_acc: dict[str, float | None] | None = None
    did_not_learn: str | None = None
    robustness: dict[str, Any] | None = None

    @property
    def mca(self) -> float | None:
        """Mean corruption accuracy (a fraction) when measured."""
        return _finite((self.robustness or {}).get("mca"))

    @property
    def test_acc(self) -> float | None:
        return _finite(self.summary.get("test_acc"))

    @property
    def test_acc_se(self) -> float | None:
        """The summary's binomial standard error (computed for older summaries)."""
        se = _finite(self.summary.get("test_acc_se"))
        if se is None:
            se = standard_error(self.test_acc, self.summary.get("test_images"))
        return se

    @property
    def val_acc_se(self) -> float | None:
        return standard_error(
            _finite(self.summary.get("best_val_acc")), self.summary.get("val_images")
        )


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

    def backend_latency(self, backend: str, key: str) -> float | None:
        """Median ``key`` (p50_ms, p99_ms) of ``backend`` over the seeds that measured it."""
        vals = [r.latencies[backend][key] for r in self.runs if key in r.latencies.get(backend, {})]
        return statistics.median(vals) if vals else None

    @property
    def cost_latency(self) -> float | None:
        return self.latency("p50_ms")

    @property
    def cost_backends(self) -> list[str]:
        """The backend(s) of the latency figure this group is placed at."""
        return backend_order({str(r.latency.get("backend")) for r in self.runs if r.latency})

    def acc_error(self, key: str = "test_acc") -> tuple[float | None, str]:
        """The uncertainty of the group's accuracy and what it is: the standard deviation
        over seeds ("std", n > 1) or one run's binomial standard error ("SE")."""
        if len(self.runs) > 1:
            return self.std(key), "std"
        run = self.runs[0]
        return (run.test_acc_se if key == "test_acc" else run.val_acc_se), "SE"

    @property
    def did_not_learn(self) -> str | None:
        """Why the setting did not learn (any of its seeds), or None: such a setting is kept
        out of the Pareto front, the bold best values and every recommendation."""
        failed = [r for r in self.runs if r.did_not_learn]
        if not failed:
            return None
        reason = str(failed[0].did_not_learn)
        if len(self.runs) > 1:
            return f"{len(failed)} of {len(self.runs)} seeds: {reason}"
        return reason

    @property
    def mca(self) -> float | None:
        """Mean corruption accuracy over the seeds when every seed's was measured, else None."""
        vals = [r.mca for r in self.runs if r.mca is not None]
        return statistics.fmean(vals) if vals and len(vals) == len(self.runs) else None

    @property
    def mca_error(self) -> float | None:
        """The spread of mCA: std over seeds (n > 1), else the one run's standard error."""
        if self.mca is None:
            return None
        if len(self.runs) > 1:
            return statistics.stdev(r.mca for r in self.runs if r.mca is not None)
        return _finite((self.runs[0].robustness or {}).get("mca_se"))

    @property
    def int8_acc(self) -> float | None:
        """Mean int8 ONNX test accuracy when every seed's was measured, else None."""
        vals = [r.int8_acc.get("acc") for r in self.runs if r.int8_acc]
        vals = [v for v in vals if v is not None]
        return statistics.fmean(vals) if vals and len(vals) == len(self.runs) else None

    def serving_run(self) -> RunRecord:
        """The seed to ship: the best validation accuracy (the test set chooses nothing)."""
        return max(self.runs, key=lambda r: _finite(r.summary.get("best_val_acc")) or -1.0)

    @property
    def label(self) -> str:
        """Short human name: ``mobilenetv2_reduced · sgd · lr 0.01`` (+ other varied settings)."""
        s = self.settings
        parts = [str(s["model"]), str(s["optimizer"]), f"lr {s['lr']:g}"]
        parts += [f"{k} {_short(v)}" for k, v in s.items() if k not in SHAPE_KEYS and v is not None]
        return " · ".join(parts)


@dataclass
class ZooEntry:
    """A shipped zoo model shown beside the study's runs (same dataset), from its card."""

    name: str
    path: Path
    card: dict[str, Any]
    summary: dict[str, Any]  # the entry's summary.json (optimizer, lr...), {} if unreadable
    latencies: dict[str, dict[str, float]]  # backend -> {p50_ms, p99_ms}, batch 1, 1 thread
    did_not_learn: str | None = None

    def get(self, key: str) -> Any:
        """A value of the card, else of the entry's summary."""
        value = self.card.get(key)
        return self.summary.get(key) if value is None else value

    @property
    def model(self) -> str:
        return str(self.get("model"))

    @property
    def dataset(self) -> str:
        return str(self.get("dataset"))

    @property
    def test_acc(self) -> float | None:
        return _finite(self.get("test_acc"))

    @property
    def test_acc_se(self) -> float | None:
        se = _finite(self.get("test_acc_se"))
        return se if se is not None else standard_error(self.test_acc, self.get("test_images"))

    @property
    def int8_acc(self) -> float | None:
        return _finite((self.card.get("int8") or {}).get("onnx_int8_acc"))

    @property
    def int8_acc_se(self) -> float | None:
        return standard_error(self.int8_acc, self.get("test_images"))

    @property
    def robustness(self) -> dict[str, Any]:
        """The card's robustness summary (``cnnbench robustness``), {} when never measured."""
        value = self.card.get("robustness")
        return value if isinstance(value, dict) else {}

    @property
    def mca(self) -> float | None:
        return _finite(self.robustness.get("mca"))

    @property
    def mca_se(self) -> float | None:
        return _finite(self.robustness.get("mca_se"))

    @property
    def label(self) -> str:
        return f"zoo: {self.name}"

    @property
    def cost_latency(self) -> float | None:
        return (self.latencies.get(COST_BACKEND) or {}).get("p50_ms")


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
    zoo: list[ZooEntry] = field(default_factory=list)  # shipped models of the same dataset(s)

    @property
    def learned(self) -> list[Group]:
        """The settings that learned: the only ones ranked or recommended."""
        return [g for g in self.groups if not g.did_not_learn]

    @property
    def failed(self) -> list[Group]:
        return [g for g in self.groups if g.did_not_learn]

    @property
    def has_robustness(self) -> bool:
        """True when some run or zoo model has a mean corruption accuracy."""
        return any(r.mca is not None for r in self.runs) or any(z.mca is not None for z in self.zoo)

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


def bench_latencies(bench: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """backend -> {"p50_ms", "p99_ms"} of a bench.json: batch 1, CPU, one thread (the lowest
    p50 when a backend was measured more than once)."""
    out: dict[str, dict[str, float]] = {}
    for r in (bench or {}).get("results") or []:
        if not isinstance(r, dict) or r.get("batch", 1) != 1 or r.get("threads") != 1:
            continue
        if r.get("device", "cpu") != "cpu" or not r.get("backend"):
            continue
        p50, p99 = _finite(r.get("p50_ms")), _finite(r.get("p99_ms"))
        if p50 is None:
            continue
        seen = out.get(r["backend"])
        if seen is None or p50 < seen["p50_ms"]:
            out[r["backend"]] = {"p50_ms": p50, **({"p99_ms": p99} if p99 is not None else {})}
    return out


def card_latencies(card: dict[str, Any]) -> dict[str, dict[str, float]]:
    """backend -> {"p50_ms", "p99_ms"} of a zoo card's ``latency`` (batch 1, one thread)."""
    lat = card.get("latency") or {}
    if not isinstance(lat, dict) or lat.get("threads", 1) != 1:
        return {}
    out = {}
    for backend, row in lat.items():
        if isinstance(row, dict) and _finite(row.get("p50_ms")) is not None:
            out[backend] = {k: float(row[k]) for k in ("p50_ms", "p99_ms") if _finite(row.get(k))}
    return out


def placed_latency(latencies: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    """The latency a run is placed at: ORT fp32 if measured, else the fastest backend."""
    if not latencies:
        return None
    backend = COST_BACKEND if COST_BACKEND in latencies else None
    if backend is None:
        backend = min(latencies, key=lambda b: latencies[b]["p50_ms"])
    row = latencies[backend]
    return {"p50_ms": row["p50_ms"], "p99_ms": row.get("p99_ms"), "backend": backend,
            "threads": 1, "device": "cpu"}  # fmt: skip


def _int8_accuracy(run: RunDir) -> dict[str, float | None] | None:
    """The int8 ONNX model's test accuracy from ``cnnbench export --int8``'s sidecar."""
    path = run.path / "export" / "model.int8.json"
    if not path.is_file():
        return None
    try:
        ev = json.loads(path.read_text()).get("export_eval") or {}
    except (OSError, ValueError, AttributeError):
        return None
    acc = _finite(ev.get("onnx_acc"))
    if acc is None:
        return None
    n = ev.get("test_images")
    return {"acc": acc, "se": standard_error(acc, n), "n": n}


def num_classes(summary: dict[str, Any], config: dict[str, Any] | None = None) -> int | None:
    """How many classes a run's dataset has, from its summary or its dataset's name."""
    counts = summary.get("test_pred_counts")
    if isinstance(counts, list) and counts:
        return len(counts)
    per_class = summary.get("per_class_acc")
    if isinstance(per_class, list | dict) and per_class:
        return len(per_class)
    cfg = config or {}
    name = str(summary.get("dataset") or cfg.get("dataset") or "").split(":", 1)[0]
    if name == "cifar100" and (cfg.get("label_kind") or summary.get("label_kind")) == "coarse":
        return 20
    return _CLASSES.get(name)


def learn_verdict(summary: dict[str, Any], config: dict[str, Any] | None = None) -> str | None:
    """The summary's ``did_not_learn`` (None: it learned); computed when the key is absent."""
    from cnnbench.verdict import recorded_verdict

    return recorded_verdict(summary, num_classes(summary, config))


def read_run(run_dir: Path) -> RunRecord | None:
    """A complete run's record, or None if the run has not finished."""
    run = RunDir(run_dir)
    summary = run.summary()
    if not summary or summary.get("status") != "complete":
        return None
    config = run.config() or {}
    for key in (*SHAPE_KEYS, "seed"):  # old or hand-made runs: fall back to the summary
        config.setdefault(key, summary.get(key))
    latencies = bench_latencies(run.bench())
    return RunRecord(
        name=run_dir.name,
        path=run_dir,
        config=config,
        summary=summary,
        metrics=run.metrics(),  # a torn last line (killed mid-write) is skipped
        latency=placed_latency(latencies),
        latencies=latencies,
        int8_acc=_int8_accuracy(run),
        did_not_learn=learn_verdict(summary, config),
        robustness=read_robustness(run_dir),
    )


def load_zoo(datasets: set[str]) -> list[ZooEntry]:
    """The shipped zoo models trained on one of ``datasets`` (none shipped: [])."""
    from cnnbench import zoo

    try:
        if not zoo.root().is_dir():
            return []
        names = zoo.names()
    except OSError:
        return []
    entries = []
    for name in names:
        path = zoo.find(name)
        if path is None:
            continue
        run = RunDir(path)
        card = run.zoo_card() or {}
        summary = run.summary() or {}
        dataset = card.get("dataset") or summary.get("dataset")
        if str(dataset) not in datasets or _finite(card.get("test_acc")) is None:
            continue
        latencies = card_latencies(card) or bench_latencies(run.bench())
        verdict_of = {**summary, **{k: v for k, v in card.items() if v is not None}}
        entries.append(
            ZooEntry(
                name=name,
                path=path,
                card=card,
                summary=summary,
                latencies=latencies,
                did_not_learn=learn_verdict(verdict_of, run.config()),
            )
        )
    return entries


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


def load_study_data(path: str | Path, *, zoo: bool = True) -> StudyData:
    """Read a study folder (``study.yaml`` + run folders), or any folder of run folders;
    with ``zoo``, the shipped zoo models of the study's datasets join as ``zoo``."""
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
    datasets = {str(r.config.get("dataset")) for r in runs}
    return StudyData(
        zoo=load_zoo(datasets) if zoo else [],
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
    """The paper's Table 1 accuracy (%) for this group's setting (architecture as registered,
    no model arguments, optimizer, learning rate, CIFAR-10), if it has one."""
    s = group.settings
    if str(s.get("dataset", "")).split(":", 1)[0] != "cifar10":
        return None
    if group.runs and group.runs[0].config.get("model_args"):  # e.g. a ReLU / max-pool LeNet
        return None
    for model, opt, lr, acc in PAPER_TABLE1:
        if s["model"] == model and s["optimizer"] == opt and math.isclose(float(s["lr"]), lr):
            return acc
    return None


def resolve_parent(parent: str, study_path: Path) -> Path | None:
    """The parent run directory a transfer run names (absolute, relative to cwd/study, or a
    shipped zoo model: ``zoo:NAME``, as training resolves it)."""
    candidates = [Path(parent)]
    if not Path(parent).is_absolute():
        candidates += [study_path / parent, study_path.parent / parent]
    shipped = zoo_find(parent)
    if shipped is not None:
        candidates.append(shipped)
    for c in candidates:
        c = c.parent if c.suffix == ".pt" else c
        if RunDir(c).summary_path.is_file():
            return c
    return None


def arch_key(group: Group) -> str:
    """The network a group trained (model, its arguments, dataset): what latency belongs to."""
    r = group.runs[0]
    return repr((group.settings["model"], r.config.get("model_args"), group.settings["dataset"]))
