"""Assemble a study's report: results table, comparisons, trade-off, paper, transfer, explore,
environment. ``write_report(study_dir)`` writes ``report/report.html`` (self-contained) and
``report/report.md`` with ``report/figures/*.png`` beside it.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from pathlib import Path
from typing import Any

from cnnbench import rundir
from cnnbench.fileio import write_text_atomic
from cnnbench.report import figures as figs
from cnnbench.report import ranking, ship
from cnnbench.report.collect import (
    PAPER_TABLE1,
    Group,
    StudyData,
    ZooEntry,
    arch_key,
    backend_name,
    backend_order,
    load_study_data,
    paper_match,
    placed_latency,
    resolve_parent,
    standard_error,
)
from cnnbench.report.document import (
    Cell,
    Details,
    Document,
    Figure,
    Markdown,
    Section,
    Table,
    render_html,
    render_markdown,
)
from cnnbench.verdict import ALPHA

_HEADERS = {
    "model": "Architecture",
    "optimizer": "Optimizer",
    "lr": "LR",
    "dataset": "Dataset",
    "epochs": "Epochs",
    "train_subset": "Train images",
    "batch_size": "Batch",
    "weight_decay": "Weight decay",
    "schedule": "Schedule",
    "label_smoothing": "Label smoothing",
    "model_args": "Model args",
    "budget_minutes": "Budget min",
    "recipe": "Recipe",
}


class ReportError(ValueError):
    """The folder holds nothing to report (no complete run)."""


# ---------------------------------------------------------------- number formatting
def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def si(x: float | None, unit: str = "") -> str:
    """3 significant digits with k / M / G."""
    if x is None:
        return "–"
    for div, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {p}{unit}".rstrip()
    return f"{x:.3g} {unit}".rstrip()


def duration(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def ms(x: float | None) -> str:
    return "–" if x is None else (f"{x:.3f}" if x < 1 else f"{x:.2f}")


def _setting_text(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key == "lr" or isinstance(value, float):
        return f"{value:g}"
    if key == "dataset":
        return str(value).replace("imagefolder:", "folder:")
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if key == "train_subset" else str(value)
    return str(value)


def _bold_best(
    rows: list[list[Cell]], col: int, higher: bool, eligible: list[bool] | None = None
) -> None:
    """Bold the best value of column ``col`` among the ``eligible`` rows (default: all; a
    model that did not learn is never "best")."""
    ok = eligible or [True] * len(rows)
    cand = [r for r, e in zip(rows, ok, strict=True) if e and isinstance(r[col].sort, int | float)]
    vals = [r[col].sort for r in cand]
    if len(vals) < 2 or min(vals) == max(vals):  # all equal: nothing stands out
        return
    best = max(vals) if higher else min(vals)
    for r in cand:
        if math.isclose(r[col].sort, best, rel_tol=1e-9):
            r[col].bold = True


# ---------------------------------------------------------------- sections
def acc_text(acc: float | None, err: float | None) -> str:
    """``61.00 ± 0.49``: an accuracy in % with its uncertainty in percentage points."""
    return pct(acc) + ("" if acc is None or err is None else f" ± {100 * err:.2f}")


def _latency_cell(p50: float | None, p99: float | None) -> Cell:
    if p50 is None:
        return Cell("–")
    return Cell(f"{ms(p50)} / {ms(p99)}", sort=p50)


def _shown_backends(data: StudyData) -> list[str]:
    """Backends with a batch-1, one-thread latency for some run or zoo model."""
    found = {b for r in data.runs for b in r.latencies}
    found |= {b for z in data.zoo for b in z.latencies}
    return backend_order(found)


def results_table(data: StudyData) -> Table:
    """One row per seed group, in the study's shape, then the zoo's models of the same
    dataset (marked); the best value per column in bold among the models that learned."""
    cols = data.columns
    backends = _shown_backends(data)
    paper = [paper_match(g) for g in data.groups]
    show_paper = any(v is not None for v in paper)
    headers = [_HEADERS.get(k, k.replace("_", " ")) for k in cols]
    headers += ["Test acc %", "n", "Best val acc %", "Params", "MACs", "Train time",
                "Images/s"]  # fmt: skip
    higher: list[bool | None] = [True, None, True, False, False, False, True]
    show_mca = data.has_robustness
    if show_mca:
        headers.append("mCA %")
        higher.append(True)
    headers += [f"{backend_name(b)} p50 / p99 ms" for b in backends]
    higher += [False] * len(backends)
    if show_paper:
        headers.append("Paper Table 1 %")
        higher.append(None)
    if data.zoo:
        headers.append("From")
        higher.append(None)
    notes = any(g.did_not_learn for g in data.groups) or any(z.did_not_learn for z in data.zoo)
    if notes:
        headers.append("Note")
        higher.append(None)
    rows, eligible = [], []
    for g, paper_acc in zip(data.groups, paper, strict=True):
        rows.append(_group_row(g, cols, backends, data, show_paper, paper_acc, notes, show_mca))
        eligible.append(not g.did_not_learn)
    for z in data.zoo:
        rows.append(_zoo_row(z, cols, backends, show_paper, notes, show_mca))
        eligible.append(not z.did_not_learn)
    for j, h in enumerate(higher):
        if h is not None:
            _bold_best(rows, len(cols) + j, h, eligible)
    numeric = [k in ("lr", "epochs", "train_subset") for k in cols]
    numeric += [True] * (7 + show_mca + len(backends) + show_paper)
    numeric += [False] * (bool(data.zoo) + notes)
    return Table(headers, rows, numeric)


def _group_row(
    g: Group,
    cols: list[str],
    backends: list[str],
    data: StudyData,
    show_paper: bool,
    paper_acc: float | None,
    notes: bool,
    show_mca: bool = False,
) -> list[Cell]:
    """A study setting's row of the results table."""
    row = [
        Cell(_setting_text(k, g.settings.get(k)), sort=_sortable(g.settings.get(k))) for k in cols
    ]
    acc, val = g.mean("test_acc"), g.mean("best_val_acc")
    params, macs = g.mean("params"), g.mean("macs")
    row += [
        Cell(acc_text(acc, g.acc_error()[0]), sort=_r(acc, 100)),
        Cell(str(len(g.runs)), sort=len(g.runs)),
        Cell(acc_text(val, g.acc_error("best_val_acc")[0]), sort=_r(val, 100)),
        Cell(si(params), sort=params),
        Cell(si(macs), sort=macs),
        Cell(duration(g.mean("train_time_s")), sort=g.mean("train_time_s")),
        Cell(f"{g.mean('images_per_s') or 0:,.0f}", sort=g.mean("images_per_s")),
    ]
    if show_mca:
        row.append(Cell(acc_text(g.mca, g.mca_error), sort=_r(g.mca, 100)))
    row += [
        _latency_cell(g.backend_latency(b, "p50_ms"), g.backend_latency(b, "p99_ms"))
        for b in backends
    ]
    if show_paper:
        row.append(Cell("–" if paper_acc is None else f"{paper_acc:g}", sort=paper_acc))
    if data.zoo:
        row.append(Cell("this study"))
    if notes:
        row.append(Cell(f"did not learn: {g.did_not_learn}" if g.did_not_learn else ""))
    return row


def _zoo_row(
    z: ZooEntry,
    cols: list[str],
    backends: list[str],
    show_paper: bool,
    notes: bool,
    show_mca: bool = False,
) -> list[Cell]:
    """A zoo model's row of the results table: its card's numbers."""
    row = [Cell(_setting_text(k, z.get(k)), sort=_sortable(z.get(k))) for k in cols]
    val = z.get("best_val_acc")
    val_se = standard_error(val, z.get("val_images"))
    row += [
        Cell(acc_text(z.test_acc, z.test_acc_se), sort=_r(z.test_acc, 100)),
        Cell("1", sort=1),
        Cell(acc_text(val, val_se), sort=_r(val, 100)),
        Cell(si(z.get("params")), sort=z.get("params")),
        Cell(si(z.get("macs")), sort=z.get("macs")),
        Cell(duration(z.get("train_time_s")), sort=z.get("train_time_s")),
        Cell(f"{z.get('images_per_s') or 0:,.0f}", sort=z.get("images_per_s")),
    ]
    if show_mca:
        row.append(Cell(acc_text(z.mca, z.mca_se), sort=_r(z.mca, 100)))
    for b in backends:
        lat = z.latencies.get(b) or {}
        row.append(_latency_cell(lat.get("p50_ms"), lat.get("p99_ms")))
    if show_paper:
        row.append(Cell("–"))
    row.append(Cell(f"zoo: {z.name}"))
    if notes:
        row.append(Cell(f"did not learn: {z.did_not_learn}" if z.did_not_learn else ""))
    return row


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _r(x: float | None, scale: float = 1) -> float | None:
    return None if x is None else round(x * scale, 4)


def _sortable(v: Any) -> float | str | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    return None if v is None else str(v)


def runs_table(data: StudyData) -> Table:
    """Every complete run, one row each, numbers straight from its summary (± its binomial
    standard error) and its bench.json (batch 1, one thread, per backend)."""
    backends = backend_order({b for r in data.runs for b in r.latencies})
    notes = any(r.did_not_learn for r in data.runs)
    headers = ["Run", "Architecture", "Optimizer", "LR", "Dataset", "Epochs", "Seed",
               "Test acc %", "Best val acc %", "Best epoch", "Params", "MACs",
               "Train time s", "Images/s"]  # fmt: skip
    for b in backends:
        headers += [f"{backend_name(b)} p50 ms", f"{backend_name(b)} p99 ms"]
    if notes:
        headers.append("Note")
    rows = []
    for r in data.runs:
        s = r.summary
        row = [
            Cell(r.name),
            Cell(str(s.get("model"))),
            Cell(str(s.get("optimizer"))),
            Cell(f"{s.get('lr'):g}", sort=s.get("lr")),
            Cell(str(s.get("dataset"))),
            Cell(str(s.get("epochs")), sort=s.get("epochs")),
            Cell(str(s.get("seed")), sort=s.get("seed")),
            Cell(acc_text(r.test_acc, r.test_acc_se), sort=s.get("test_acc")),
            Cell(acc_text(s.get("best_val_acc"), r.val_acc_se), sort=s.get("best_val_acc")),
            Cell(str(s.get("best_epoch")), sort=s.get("best_epoch")),
            Cell(f"{s.get('params', 0):,}", sort=s.get("params")),
            Cell(f"{s.get('macs', 0):,}", sort=s.get("macs")),
            Cell(f"{s.get('train_time_s', 0):.1f}", sort=s.get("train_time_s")),
            Cell(f"{s.get('images_per_s', 0):.1f}", sort=s.get("images_per_s")),
        ]
        for b in backends:
            lat = r.latencies.get(b, {})
            row += [Cell(ms(lat.get("p50_ms")), sort=lat.get("p50_ms")),
                    Cell(ms(lat.get("p99_ms")), sort=lat.get("p99_ms"))]  # fmt: skip
        if notes:
            row.append(Cell(f"did not learn: {r.did_not_learn}" if r.did_not_learn else ""))
        rows.append(row)
    numeric = [False, False, False, True, False, True, True] + [True] * 7
    numeric += [True] * (2 * len(backends)) + [False] * notes
    return Table(headers, rows, numeric)


def _cost(data: StudyData) -> tuple[list[figs.Point], str, str]:
    """The trade-off figure's points (study settings, then zoo models) and its cost axis:
    batch-1 latency on one CPU thread when every setting has it, else MACs.

    Latency belongs to the architecture, not to how it was trained: settings that share one
    (same model, model arguments and dataset) get the median of all their measurements, so
    timing noise cannot make one of two identical networks look cheaper than the other. A
    setting is placed at ORT fp32 when measured (the backend `cnnbench serve` runs).
    """
    points = []
    if data.has_latency:
        by_arch: dict[str, list[float]] = {}
        for g in data.groups:
            by_arch.setdefault(arch_key(g), []).extend(
                float(r.latency["p50_ms"]) for r in g.runs if r.latency and r.latency.get("p50_ms")
            )
        for g in data.groups:
            points.append(_point(g, statistics.median(by_arch[arch_key(g)])))
        for z in data.zoo:
            placed = placed_latency(z.latencies)
            if placed is not None:
                points.append(_zoo_point(z, placed["p50_ms"]))
        backends = backend_order({b for g in data.groups for b in g.cost_backends})
        label = f"batch-1 latency p50, 1 thread, {', '.join(map(backend_name, backends))} (ms)"
        return points, label, "ms"
    for g in data.groups:
        points.append(_point(g, (g.mean("macs") or 0.0) / 1e6))
    for z in data.zoo:
        if z.get("macs"):
            points.append(_zoo_point(z, float(z.get("macs")) / 1e6))
    return points, "MACs per image (millions)", "M MACs"


def _point(g: Group, cost: float) -> figs.Point:
    err = g.acc_error()[0]
    return figs.Point(g.label, cost, 100 * (g.mean("test_acc") or 0.0),
                      None if err is None else 100 * err, str(g.settings["model"]),
                      failed=bool(g.did_not_learn))  # fmt: skip


def _zoo_point(z: ZooEntry, cost: float) -> figs.Point:
    err = z.test_acc_se
    return figs.Point(z.label, cost, 100 * (z.test_acc or 0.0), None if err is None else 100 * err,
                      z.model, zoo=True, failed=bool(z.did_not_learn))  # fmt: skip


def _cost_text(value: float, unit: str) -> str:
    return f"{ms(value)} ms" if unit == "ms" else f"{value:.3g} M MACs"


def tradeoff(data: StudyData, *, recommends: bool = True) -> tuple[list, list[str]]:
    """Blocks of the trade-off section, and the Pareto front in plain words: with a budget of
    at least X, ship Y (the study's settings and the zoo's models that learned). With
    ``recommends`` (no latency-budget recommendation elsewhere), the front is the
    recommendation."""
    points, label, unit = _cost(data)
    png, front = figs.tradeoff_figure(points, label)
    measure = "latency" if unit == "ms" else "compute"
    words = []
    for i in front:
        pt = points[i]
        words.append(
            f"with a {measure} budget of at least **{_cost_text(pt.cost, unit)}** per image, "
            f"ship **{pt.label}** ({pct(pt.acc / 100)}"
            + (f" ± {pt.err:.2f}" if pt.err is not None else "")
            + " % test accuracy)"
        )
    caption = (
        "Each point is one setting (mean over seeds; bar: ±1 std over seeds, or ±1 binomial "
        "standard error for one run); diamonds are zoo models (shipped, trained elsewhere); "
        "grey crosses did not learn and are never on the front; black-edged points form the "
        "Pareto front: nothing else is both cheaper and more accurate."
    )
    blocks: list = [[Figure("tradeoff", f"Test accuracy versus {label}", png, caption, wide=True)]]
    if unit == "ms":
        blocks.append(
            "Latency is batch-1 inference on one CPU thread (`cnnbench.bench`, each backend in "
            "a fresh process), p50; settings that share an architecture are placed at the "
            "median of its measurements, zoo models at their card's figure."
        )
    else:
        blocks.append(
            "No batch-1 latency was measured for every run (`cnnbench.bench` writes "
            f"`{rundir.BENCH}`), so the cost axis is MACs, a proxy that ignores memory traffic "
            "and kernel efficiency."
        )
    unplaced = [z.label for z in data.zoo if unit == "ms" and placed_latency(z.latencies) is None]
    if unplaced:
        blocks.append("Not on the figure (no latency on the card): " + ", ".join(unplaced) + ".")
    if words:
        head = "**Pareto front:** "
        if recommends:
            head = "**Recommendation, most accurate model under each budget:** "
        blocks.append(head + "; ".join(words) + ".")
    datasets = {str(g.settings["dataset"]) for g in data.groups}
    if len(datasets) > 1:
        blocks.append(
            "The study mixes datasets (" + ", ".join(sorted(datasets)) + "); compare "
            "accuracies within one dataset only."
        )
    return blocks, words


def _budget_text(ms_value: float) -> str:
    return f"≤ {ms_value:g} ms"


def _ship_rows(chosen: list[ship.Pick], many: bool) -> list[list[Cell]]:
    rows = []
    for p in chosen:
        c = p.choice
        head = [Cell(_budget_text(p.budget_ms), sort=p.budget_ms)]
        head += [Cell(p.dataset)] if many else []
        if c is None:
            f = p.fastest
            assert f is not None
            why = f"nothing fits (fastest: {f.label}, {backend_name(f.backend)}, {ms(f.p50_ms)} ms)"
            rows.append([*head, Cell(why)] + [Cell("–")] * 6)
            continue
        acc = acc_text(c.acc, c.err) + (f" ({c.err_kind})" if c.err is not None else "")
        rows.append(
            [
                *head,
                Cell(c.label, bold=True),
                Cell(c.source),
                Cell(backend_name(c.backend)),
                Cell(acc, sort=_r(c.acc, 100)),
                Cell(ms(c.p50_ms), sort=c.p50_ms),
                Cell(ms(c.p99_ms), sort=c.p99_ms),
                Cell(f"`{c.command}`"),
            ]
        )
    return rows


def ship_section(data: StudyData) -> tuple[list | None, list[ship.Pick]]:
    """The recommendation: per latency budget (p50, batch 1, one thread), the most accurate
    model (a study setting or a zoo model) that fits, its backend and the command that
    serves it; None when nothing has a latency."""
    cands, unmeasured = ship.candidates(data)
    if not cands:
        return None, []
    chosen = ship.picks(cands)
    many = len({p.dataset for p in chosen}) > 1
    rows = _ship_rows(chosen, many)
    headers = ["p50 budget", *(["Dataset"] if many else []), "Ship", "From", "Backend",
               "Test acc %", "p50 ms", "p99 ms", "Serve it"]  # fmt: skip
    numeric = [True, *([False] if many else []), False, False, False, True, True, True, False]
    blocks: list = [
        "**Recommendation:** for each latency budget, the most accurate model whose measured "
        "p50 fits (batch 1, one CPU thread), among this study's settings that learned and the "
        "zoo's models of the same dataset, on ONNX Runtime fp32 or int8. ± is the binomial "
        "standard error (SE) of the test accuracy, or the standard deviation over seeds (std); "
        "an int8 row's accuracy is the int8 model's own.",
        Table(headers, rows, numeric),
    ]
    if any(p.choice and p.choice.backend != ship.COST_BACKEND for p in chosen):
        blocks.append(
            "`cnnbench serve` runs the fp32 ONNX model (the ORT fp32 figures); an ORT int8 "
            "pick's file is written by `cnnbench export <run or zoo name> --int8` "
            "(`export/model.int8.onnx`), which `cnnbench serve` does not load yet."
        )
    if unmeasured:
        blocks.append(
            "Int8 latency measured but int8 accuracy not (so never recommended on int8): "
            + ", ".join(unmeasured)
            + "; `cnnbench export <run> --int8` measures it and the next report uses it."
        )
    if data.failed:
        blocks.append(
            "Left out because they did not learn: "
            + ", ".join(g.label for g in data.failed)
            + " (see Results)."
        )
    return blocks, chosen


def _paper_row(g: Group, paper: float, failed: bool) -> list[Cell]:
    acc = g.mean("test_acc")
    ours = None if acc is None else 100 * acc
    delta = None if ours is None else ours - paper
    train_n = g.mean("train_images")
    err, kind = g.acc_error()
    row = [
        Cell(str(g.settings["model"])),
        Cell(str(g.settings["optimizer"])),
        Cell(f"{g.settings['lr']:g}", sort=g.settings["lr"]),
        Cell(str(g.settings["epochs"]), sort=g.settings["epochs"]),
        Cell(f"{train_n:,.0f}" if train_n else "–", sort=train_n),
        Cell(acc_text(acc, err) + f" ({kind}, n={len(g.runs)})", sort=ours),
        Cell(f"{paper:g}", sort=paper),
        Cell(
            "–" if delta is None else f"{delta:+.2f}",
            sort=delta,
            bold=delta is not None and delta > 0 and not g.did_not_learn,
        ),
    ]
    if failed:
        row.append(Cell(f"did not learn: {g.did_not_learn}" if g.did_not_learn else ""))
    return row


def paper_section(data: StudyData) -> list | None:
    matches = [(g, paper_match(g)) for g in data.groups]
    matches = [(g, p) for g, p in matches if p is not None]
    if not matches:
        return None
    failed = any(g.did_not_learn for g, _ in matches)
    rows = [_paper_row(g, paper, failed) for g, paper in matches]
    smaller = [g for g, _ in matches if (g.mean("train_images") or 0) < 40000]
    headers = ["Architecture", "Optimizer", "LR", "Epochs", "Train images", "Ours %", "Paper %",
               "Δ pp", *(["Note"] if failed else [])]  # fmt: skip
    blocks: list = [
        "The paper's Table 1 reports one CIFAR-10 test accuracy per setting (one run, full "
        "training split, about 15-25 epochs). Rows of this study with the same architecture "
        "(as registered, no model arguments), optimizer and learning rate on CIFAR-10 are "
        "compared below; ours is ± its binomial standard error (SE) or the standard deviation "
        "over seeds (std); Δ is ours minus the paper in percentage points (bold: we beat it).",
        Table(
            headers, rows, [False, False, True, True, True, True, True, True, False][: len(headers)]
        ),
    ]
    if smaller:
        blocks.append(
            "Some matched rows trained on a subset of the training split or for few epochs "
            "(see *Train images*, *Epochs*): they show the trend, not the paper's budget. "
            "`studies/paper.yaml` runs the paper's budget."
        )
    missing = [
        f"{m} {o} lr {lr:g}"
        for m, o, lr, _ in PAPER_TABLE1
        if not any(
            g.settings["model"] == m
            and g.settings["optimizer"] == o
            and math.isclose(float(g.settings["lr"]), lr)
            for g, _ in matches
        )
    ]
    if missing:
        blocks.append("Not in this study: " + ", ".join(missing) + ".")
    return blocks


def transfer_section(data: StudyData) -> list | None:
    children = [r for r in data.runs if r.summary.get("transfer")]
    if not children:
        return None
    rows = []
    for r in children:
        t = r.summary["transfer"]
        parent_dir = resolve_parent(str(t.get("parent", "")), data.path)
        parent = rundir.read_summary(parent_dir) if parent_dir is not None else None
        p_acc = parent.get("test_acc") if parent else None
        p_se = None
        if parent:
            p_se = parent.get("test_acc_se") or standard_error(p_acc, parent.get("test_images"))
        c_acc = r.summary.get("test_acc")
        ratio = c_acc / p_acc if (p_acc and c_acc is not None) else None
        rows.append(
            [
                Cell(r.name),
                Cell(str(t.get("policy", "–"))),
                Cell(parent_dir.name if parent_dir else f"{t.get('parent')} (not found)"),
                Cell(f"{parent.get('dataset')}" if parent else "–"),
                Cell(str(r.summary.get("dataset"))),
                Cell(acc_text(p_acc, p_se), sort=p_acc),
                Cell(acc_text(c_acc, r.test_acc_se), sort=c_acc),
                Cell("–" if ratio is None else f"{ratio:.3f}", sort=ratio),
            ]
        )
    for col in (6, 7):
        _bold_best(rows, col, True)
    headers = ["Child run", "Policy", "Parent run", "Parent dataset", "Child dataset",
               "Parent acc %", "Child acc %", "Child / parent"]  # fmt: skip
    return [
        "Fine-tuned children of a parent run (accuracies ± binomial standard error). The "
        "ratio child / parent compares test accuracies on each model's own dataset: it says "
        "how much of the parent's skill the policy keeps, not which dataset is harder.",
        Table(headers, rows, [False] * 5 + [True] * 3),
    ]


def explore_section(data: StudyData) -> list | None:
    ex = data.explore
    if ex is None:
        return None
    blocks: list = []
    if isinstance(ex.get("summary_markdown"), str) and ex["summary_markdown"].strip():
        blocks.append(Markdown(ex["summary_markdown"]))
    shown = []
    base = data.path / "explore"
    for i, item in enumerate(ex.get("figures") or []):
        if not isinstance(item, dict) or not item.get("path"):
            continue
        p = Path(item["path"])
        for candidate in (p, base / p, data.path / p):
            if candidate.is_file():
                title = str(item.get("title") or candidate.stem)
                shown.append(Figure(f"explore-{i}-{candidate.stem}", title, candidate.read_bytes()))
                break
    if shown:
        blocks.append(shown)
    return blocks or None


def environment_section(data: StudyData) -> list:
    def distinct(key: str) -> str:
        vals = sorted(
            {str(r.summary.get(key)) for r in data.runs if r.summary.get(key) is not None}
        )
        return ", ".join(vals) or "–"

    versions: dict[str, set[str]] = {}
    for r in data.runs:
        for lib, v in (r.summary.get("versions") or {}).items():
            versions.setdefault(lib, set()).add(str(v))
    libraries = "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in sorted(versions.items()))
    env_rows = [
        [Cell("Device"), Cell(distinct("device"))],
        [Cell("Training threads"), Cell(distinct("threads"))],
        [Cell("Git commit"), Cell(distinct("git_commit"))],
        [Cell("Libraries"), Cell(libraries or "–")],
    ]
    measured = backend_order({b for r in data.runs for b in r.latencies})
    if measured:
        names = ", ".join(f"{backend_name(b)} ({b})" for b in measured)
        env_rows.append(
            [Cell("Latency measured"), Cell(f"{names}; batch 1, 1 thread, CPU, fresh process each")]
        )
    if data.zoo:
        env_rows.append([Cell("Zoo models shown"), Cell(", ".join(z.name for z in data.zoo))])
    blocks: list = [Table(["Setting", "Value"], env_rows, sortable=False)]
    source = data.source or f"<the study file of {data.name}>"
    blocks.append(
        f"Reproduce the whole study: `cnnbench study {source}` (into a fresh "
        "`--runs-dir`; in an existing one it only trains what is missing)"
        + (f". This study was run as `{data.command}`." if data.command else ".")
    )
    blocks.append(
        f"Reproduce one number: every run folder holds its resolved `{rundir.CONFIG}`, so "
        f"`cnnbench train --config <run>/{rundir.CONFIG} --runs-dir <elsewhere>` retrains it "
        "exactly (same split, same seeds)."
    )
    cmd_rows = [
        [
            Cell(r.name),
            Cell(f"`{r.summary.get('command') or '–'}`"),
            Cell(f"`cnnbench train --config {rundir.RunDir(r.path).config_path}`"),
        ]
        for r in data.runs
    ]
    blocks.append(
        Details(
            f"Commands of the {len(data.runs)} runs",
            [Table(["Run", "Recorded command", "Retrain this run"], cmd_rows)],
        )
    )
    return blocks


def _best_group(data: StudyData) -> Group | None:
    """The most accurate setting that learned (mean test accuracy over its seeds)."""
    learned = data.learned
    return max(learned, key=lambda g: g.mean("test_acc") or -1.0) if learned else None


def _latency_phrase(best: Group) -> str:
    names = ", ".join(map(backend_name, best.cost_backends))
    return f"{ms(best.cost_latency)} ms per image ({names}, batch 1, one CPU thread)"


def _cost_phrase(best: Group) -> str:
    if best.cost_latency is not None:
        return _latency_phrase(best)
    return f"{si(best.mean('macs'))} MACs per image"


def _spread(g: Group) -> str:
    err, kind = g.acc_error()
    if err is None:
        return _plural(len(g.runs), "run")
    if kind == "std":
        return f"± {100 * err:.2f}, std over {len(g.runs)} seeds"
    return f"± {100 * err:.2f}, binomial SE of 1 run"


def verdict(best: Group | None) -> list[tuple[str, str, str]]:
    """The headline facts of the best setting that learned: (label, value, detail) rows."""
    if best is None:
        return [("Best model", "none learned", "every setting did not learn: see Results")]
    epochs = _plural(best.settings["epochs"], "epoch")
    rows = [
        ("Best model", best.label, f"{best.settings['dataset']}, {epochs}"),
        ("Test accuracy", f"{pct(best.mean('test_acc'))} %", _spread(best)),
    ]
    if best.cost_latency is not None:
        names = ", ".join(map(backend_name, best.cost_backends))
        p99 = f"p99 {ms(best.latency('p99_ms'))} ms; {names}, 1 thread"
        rows.append(("Batch-1 CPU latency", f"{ms(best.cost_latency)} ms", p99))
    params = f"{si(best.mean('params'))} parameters"
    rows.append(("Cost", f"{si(best.mean('macs'))} MACs", params))
    return rows


def _pick_phrase(p: ship.Pick) -> str:
    c = p.choice
    assert c is not None
    where = "from the zoo" if c.source == "zoo" else "trained here"
    return (
        f"under a {p.budget_ms:g} ms p50 budget ship **{c.label}** ({acc_text(c.acc, c.err)} %, "
        f"{backend_name(c.backend)} {ms(c.p50_ms)} ms, {where}: `{c.command}`)"
    )


def verdict_text(best: Group | None, words: list[str], picks: list[ship.Pick]) -> str:
    """The verdict in a few sentences: the study's best, then what to ship on a budget."""
    if best is None:
        text = "No setting of this study learned (see Results)."
    else:
        text = (
            f"**{best.label}** is the most accurate model of this study that learned: "
            f"{pct(best.mean('test_acc'))} % ({_spread(best)}) on {best.settings['dataset']} "
            f"at {_cost_phrase(best)}."
        )
    fitting = [p for p in picks if p.choice is not None]
    if fitting:
        chosen = [fitting[0]] + ([fitting[-1]] if fitting[-1].choice != fitting[0].choice else [])
        text += " What to ship: " + "; ".join(_pick_phrase(p) for p in chosen) + "."
    elif words and len(words) > 1:
        text += " On a tighter budget: " + words[0] + "."
    return text


def results_section(data: StudyData) -> Section:
    blocks: list = [
        results_table(data),
        "Test accuracy is measured once per run, on the test split, with the checkpoint of the "
        "best validation epoch. ± is the binomial standard error of one run's accuracy (n = 1) "
        "or the sample standard deviation over its seeds (n > 1). Latency is batch 1 on one "
        "CPU thread, per backend (ORT: ONNX Runtime). Best values per column are bold (among "
        "the models that learned); click a column header to sort (HTML).",
    ]
    if data.has_robustness:
        blocks.append(_robustness_note(data))
    blocks += [n for n in (ranking.ranking_note(data), ranking.absent_model_note(data)) if n]
    if data.zoo:
        blocks.append(
            "Rows marked *zoo* are shipped models (`cnnbench zoo`) of the same dataset, trained "
            "elsewhere with their own recipe and budget (see Epochs, Train time): their numbers "
            "are their cards'. `cnnbench zoo` lists them."
        )
    failed = [(g.label, g.did_not_learn) for g in data.failed]
    failed += [(z.label, z.did_not_learn) for z in data.zoo if z.did_not_learn]
    if failed:
        listed = "; ".join(f"**{label}**: {why}" for label, why in failed)
        blocks.append(
            f"**{_plural(len(failed), 'model')} did not learn** and "
            f"{'is' if len(failed) == 1 else 'are'} kept out of the Pareto front, the bold best "
            f"values and every recommendation: {listed}. A run did not learn when its test "
            f"accuracy is not above chance by a one-sided exact binomial test (p ≥ {ALPHA:g}), "
            "or its predictions collapsed onto a few classes (one class takes more than half, "
            "or fewer than half of the classes are ever predicted); see `cnnbench.verdict`."
        )
    if data.missing:
        listed = ", ".join(f"`{m}`" for m in data.missing)
        blocks.append(f"**{len(data.missing)} run(s) not complete yet** and left out: {listed}.")
    return Section("results", "Results", blocks)


def _robustness_note(data: StudyData) -> str:
    """What the mCA column is, with the image counts it was measured on."""
    counts = {(r.robustness or {}).get("images") for r in data.runs if r.mca is not None}
    counts |= {z.robustness.get("images") for z in data.zoo if z.mca is not None}
    sizes = ", ".join(f"{n:,}" for n in sorted(c for c in counts if isinstance(c, int)))
    missing = sum(g.mca is None for g in data.groups)
    text = (
        "**mCA** is the mean corruption accuracy: the mean test accuracy over the 15 "
        "corruptions x 5 severities of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019), "
        f"regenerated by `cnnbench robustness` on {sizes or 'some'} test images per cell, "
        "± its standard error (n = 1) or the standard deviation over seeds."
    )
    if missing:
        text += f" {_plural(missing, 'setting')} not measured (–): `cnnbench robustness RUN`."
    return text


def comparisons_section(data: StudyData) -> Section | None:
    comp = figs.comparisons(data)
    if not comp:
        return None
    return Section(
        "comparisons",
        "Comparisons",
        [
            "Each panel holds every setting fixed except one; lines are validation accuracy "
            "per epoch (training dotted), mean over seeds.",
            [Figure(slug, title, png, wide=n > 1) for slug, title, png, n in comp],
        ],
    )


def curves_section(data: StudyData) -> Section:
    curves = [
        Figure(
            f"curves-{i:02d}",
            g.label
            + f" ({g.settings['dataset']})"
            + (" — did not learn" if g.did_not_learn else ""),
            figs.curves_figure(g),
        )
        for i, g in enumerate(data.groups)
    ]
    return Section(
        "curves",
        "Training curves",
        [
            "Loss and accuracy per epoch, training (dashed) and validation (solid); with several "
            "seeds, thin lines are the seeds and the thick line their mean. Training accuracy is "
            "measured on augmented batches while the weights change, so it can sit below "
            "validation early on.",
            curves,
        ],
    )


def _subtitle(data: StudyData) -> str:
    n_runs, n_groups = len(data.runs), len(data.groups)
    counts = (
        f"{n_runs} run{'s' if n_runs != 1 else ''} in {n_groups} setting"
        f"{'s' if n_groups != 1 else ''}, from `{data.path}`"
    )
    return (data.description + " — " if data.description else "") + counts


def _optional(sid: str, title: str, blocks: list | None) -> Section | None:
    """A section that only some studies have (None: this one has nothing for it)."""
    return Section(sid, title, blocks) if blocks else None


# ---------------------------------------------------------------- the document
def build_document(data: StudyData) -> Document:
    """The report of a study folder as a Document (see cnnbench.report.document)."""
    if not data.groups:
        raise ReportError(f"{data.path}: no complete run to report on")
    best = _best_group(data)
    results = results_section(data)
    ship_blocks, picks = ship_section(data)
    trade_blocks, words = tradeoff(data, recommends=ship_blocks is None)
    runs_text = (
        f"One row per run, numbers exactly as in its `{rundir.SUMMARY}` (± its binomial "
        f"standard error) and its `{rundir.BENCH}` (batch 1, one thread)."
    )
    sections = [
        results,
        _optional("ship", "What to ship", ship_blocks),
        Section("tradeoff", "Accuracy versus cost", trade_blocks),
        comparisons_section(data),
        curves_section(data),
        _optional("paper", "Against the paper's Table 1", paper_section(data)),
        _optional("transfer", "Transfer learning", transfer_section(data)),
        _optional("explore", "Data exploration", explore_section(data)),
        Section("runs", "All runs", [runs_text, runs_table(data)]),
        Section("environment", "Environment and reproduction", environment_section(data)),
    ]
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return Document(
        title=f"cnnbench study: {data.name}",
        subtitle=_subtitle(data),
        verdict=verdict(best),
        verdict_text=verdict_text(best, words, picks),
        sections=[s for s in sections if s is not None],
        footer=f"Written by `cnnbench report` on {stamp}. Self-contained: no network needed.",
    )


def write_report(study_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/`` into ``<study_dir>/report``.

    Raises ReportError when the folder has no complete run.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise ReportError(f"no such study folder: {study_dir}")
    data = load_study_data(study_dir)
    doc = build_document(data)
    out = Path(out_dir) if out_dir else study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.md", render_markdown(doc, out / "figures"))
    write_text_atomic(out / "report.html", render_html(doc))
    return {"html": out / "report.html", "markdown": out / "report.md", "figures": out / "figures"}
