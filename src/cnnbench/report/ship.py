"""What to ship: for each latency budget, the most accurate model whose batch-1 p50 fits.

The candidates are the study's settings that learned and the zoo's models of the same
dataset, each on every backend the study measures (ONNX Runtime fp32 and int8, one CPU
thread). A candidate's accuracy is the one of the model that backend runs: the test accuracy
for fp32 (the ONNX export matches PyTorch), the int8 ONNX model's own test accuracy for int8
(the zoo card's, or ``cnnbench export <run> --int8``'s); an int8 latency without a measured
int8 accuracy is shown but never recommended. Nothing here formats; ``build`` does.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from cnnbench.report.collect import (
    COST_BACKEND,
    LATENCY_BUDGETS_MS,
    SHIP_BACKENDS,
    Group,
    StudyData,
    ZooEntry,
    arch_key,
)


@dataclass
class Candidate:
    """One model on one backend, with what it scores and costs."""

    label: str
    source: str  # "this study" or "zoo"
    backend: str
    acc: float  # test accuracy, fraction
    err: float | None  # its uncertainty: seed std (n > 1) or binomial SE
    err_kind: str  # "std" or "SE"
    n: int  # seeds
    p50_ms: float
    p99_ms: float | None
    target: str  # what `cnnbench serve` takes: the run folder, or the zoo name
    dataset: str

    @property
    def command(self) -> str:
        return f"cnnbench serve {self.target}"


@dataclass
class Pick:
    """The choice under one budget: the most accurate candidate that fits, else None and the
    fastest candidate (how far off the budget is)."""

    budget_ms: float
    dataset: str
    choice: Candidate | None
    fastest: Candidate | None


def arch_latency(data: StudyData, backend: str, key: str = "p50_ms") -> dict[str, float]:
    """Median ``key`` of ``backend`` per architecture (model, its arguments, dataset) over
    every run of the study: latency belongs to the network, not to how it was trained."""
    values: dict[str, list[float]] = {}
    for g in data.groups:
        for r in g.runs:
            v = r.latencies.get(backend, {}).get(key)
            if v is not None:
                values.setdefault(arch_key(g), []).append(v)
    return {k: statistics.median(v) for k, v in values.items()}


def _study_candidates(data: StudyData) -> tuple[list[Candidate], list[str]]:
    out: list[Candidate] = []
    unmeasured_int8: list[str] = []
    by_backend = {
        b: (arch_latency(data, b), arch_latency(data, b, "p99_ms")) for b in SHIP_BACKENDS
    }
    for g in data.learned:
        acc = g.mean("test_acc")
        if acc is None:
            continue
        target = str(g.serving_run().path)
        for backend in SHIP_BACKENDS:
            p50s, p99s = by_backend[backend]
            p50 = p50s.get(arch_key(g))
            if p50 is None:
                continue
            if backend == COST_BACKEND:
                b_acc, (err, kind) = acc, g.acc_error()
            elif g.int8_acc is not None:
                b_acc, kind = g.int8_acc, "SE" if len(g.runs) == 1 else "std"
                err = _int8_err(g)
            else:
                unmeasured_int8.append(g.label)
                continue
            out.append(
                Candidate(
                    label=g.label,
                    source="this study",
                    backend=backend,
                    acc=b_acc,
                    err=err,
                    err_kind=kind,
                    n=len(g.runs),
                    p50_ms=p50,
                    p99_ms=p99s.get(arch_key(g)),
                    target=target,
                    dataset=str(g.settings["dataset"]),
                )
            )
    return out, unmeasured_int8


def _int8_err(g: Group) -> float | None:
    vals = [r.int8_acc["acc"] for r in g.runs if r.int8_acc and r.int8_acc.get("acc") is not None]
    if len(g.runs) > 1:
        return statistics.stdev(vals) if len(vals) > 1 else None
    return g.runs[0].int8_acc.get("se") if g.runs[0].int8_acc else None


def _zoo_candidates(entries: list[ZooEntry]) -> list[Candidate]:
    out = []
    for z in entries:
        if z.did_not_learn:
            continue
        for backend in SHIP_BACKENDS:
            lat = z.latencies.get(backend)
            if not lat:
                continue
            if backend == COST_BACKEND:
                acc, err = z.test_acc, z.test_acc_se
            else:
                acc, err = z.int8_acc, z.int8_acc_se
            if acc is None:
                continue
            out.append(
                Candidate(
                    label=z.label,
                    source="zoo",
                    backend=backend,
                    acc=acc,
                    err=err,
                    err_kind="SE",
                    n=1,
                    p50_ms=lat["p50_ms"],
                    p99_ms=lat.get("p99_ms"),
                    target=z.name,
                    dataset=z.dataset,
                )
            )
    return out


def candidates(data: StudyData) -> tuple[list[Candidate], list[str]]:
    """Every (model, backend) that may be recommended, and the labels of the study settings
    whose int8 latency is measured but whose int8 accuracy is not (never recommended)."""
    study, unmeasured = _study_candidates(data)
    return study + _zoo_candidates(data.zoo), unmeasured


def picks(cands: list[Candidate], budgets: tuple[float, ...] = LATENCY_BUDGETS_MS) -> list[Pick]:
    """For each dataset and budget: the most accurate candidate with p50 <= budget (ties: the
    faster one)."""
    out = []
    for dataset in sorted({c.dataset for c in cands}):
        mine = [c for c in cands if c.dataset == dataset]
        fastest = min(mine, key=lambda c: c.p50_ms)
        for budget in budgets:
            fits = [c for c in mine if c.p50_ms <= budget]
            choice = max(fits, key=lambda c: (c.acc, -c.p50_ms)) if fits else None
            out.append(Pick(budget, dataset, choice, None if choice else fastest))
    return out
