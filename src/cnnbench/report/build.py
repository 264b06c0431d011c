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
from cnnbench.report.collect import (
    PAPER_TABLE1,
    Group,
    StudyData,
    load_study_data,
    paper_match,
    resolve_parent,
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


def _bold_best(rows: list[list[Cell]], col: int, higher: bool) -> None:
    vals = [r[col].sort for r in rows if isinstance(r[col].sort, int | float)]
    if len(vals) < 2 or min(vals) == max(vals):  # all equal: nothing stands out
        return
    best = max(vals) if higher else min(vals)
    for r in rows:
        if isinstance(r[col].sort, int | float) and math.isclose(r[col].sort, best, rel_tol=1e-9):
            r[col].bold = True


# ---------------------------------------------------------------- sections
def results_table(data: StudyData) -> Table:
    """One row per seed group, in the study's shape; best value per column in bold."""
    cols = data.columns
    show_latency = any(g.cost_latency is not None for g in data.groups)
    headers = [_HEADERS.get(k, k.replace("_", " ")) for k in cols]
    headers += ["Test acc % (mean ± std)", "n", "Best val acc %", "Params", "MACs",
                "Train time", "Images/s"]  # fmt: skip
    higher = [True, None, True, False, False, False, True]
    if show_latency:
        headers += ["p50 ms (batch 1)", "p99 ms"]
        higher += [False, False]
    rows = []
    for g in data.groups:
        row = [
            Cell(_setting_text(k, g.settings.get(k)), sort=_sortable(g.settings.get(k)))
            for k in cols
        ]
        acc, std = g.mean("test_acc"), g.std("test_acc")
        acc_text = pct(acc) + (f" ± {100 * std:.2f}" if std is not None else "")
        params, macs = g.mean("params"), g.mean("macs")
        row += [
            Cell(acc_text, sort=None if acc is None else round(100 * acc, 4)),
            Cell(str(len(g.runs)), sort=len(g.runs)),
            Cell(pct(g.mean("best_val_acc")), sort=_r(g.mean("best_val_acc"), 100)),
            Cell(si(params), sort=params),
            Cell(si(macs), sort=macs),
            Cell(duration(g.mean("train_time_s")), sort=g.mean("train_time_s")),
            Cell(f"{g.mean('images_per_s') or 0:,.0f}", sort=g.mean("images_per_s")),
        ]
        if show_latency:
            p50, p99 = g.latency("p50_ms"), g.latency("p99_ms")
            row += [Cell(ms(p50), sort=p50), Cell(ms(p99), sort=p99)]
        rows.append(row)
    for j, h in enumerate(higher):
        if h is not None:
            _bold_best(rows, len(cols) + j, h)
    numeric = [k in ("lr", "epochs", "train_subset") for k in cols] + [True] * len(higher)
    return Table(headers, rows, numeric)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _r(x: float | None, scale: float = 1) -> float | None:
    return None if x is None else round(x * scale, 4)


def _sortable(v: Any) -> float | str | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    return None if v is None else str(v)


def runs_table(data: StudyData) -> Table:
    """Every complete run, one row each, numbers straight from its summary."""
    show_latency = any(r.latency for r in data.runs)
    headers = ["Run", "Architecture", "Optimizer", "LR", "Dataset", "Epochs", "Seed",
               "Test acc %", "Best val acc %", "Best epoch", "Params", "MACs",
               "Train time s", "Images/s"]  # fmt: skip
    if show_latency:
        headers += ["p50 ms", "p99 ms", "Backend", "Threads"]
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
            Cell(pct(s.get("test_acc")), sort=s.get("test_acc")),
            Cell(pct(s.get("best_val_acc")), sort=s.get("best_val_acc")),
            Cell(str(s.get("best_epoch")), sort=s.get("best_epoch")),
            Cell(f"{s.get('params', 0):,}", sort=s.get("params")),
            Cell(f"{s.get('macs', 0):,}", sort=s.get("macs")),
            Cell(f"{s.get('train_time_s', 0):.1f}", sort=s.get("train_time_s")),
            Cell(f"{s.get('images_per_s', 0):.1f}", sort=s.get("images_per_s")),
        ]
        if show_latency:
            lat = r.latency or {}
            row += [
                Cell(ms(lat.get("p50_ms")), sort=lat.get("p50_ms")),
                Cell(ms(lat.get("p99_ms")), sort=lat.get("p99_ms")),
                Cell(str(lat.get("backend", "–"))),
                Cell(str(lat.get("threads", "–"))),
            ]
        rows.append(row)
    numeric = [False, False, False, True, False, True, True] + [True] * 7
    if show_latency:
        numeric += [True, True, False, True]
    return Table(headers, rows, numeric)


def _cost(data: StudyData) -> tuple[list[float], str, str]:
    """The cost axis: batch-1 CPU latency when every group has it, else MACs.

    Latency belongs to the architecture, not to how it was trained: settings that share one
    (same model, model arguments and dataset) get the median of all their measurements, so
    timing noise cannot make one of two identical networks look cheaper than the other.
    """
    if data.has_latency:
        by_arch: dict[str, list[float]] = {}
        for g in data.groups:
            by_arch.setdefault(_arch_key(g), []).extend(
                float(r.latency["p50_ms"]) for r in g.runs if r.latency and r.latency.get("p50_ms")
            )
        costs = [statistics.median(by_arch[_arch_key(g)]) for g in data.groups]
        return costs, "batch-1 CPU latency, p50 (ms)", "ms"
    costs = [(g.mean("macs") or 0.0) / 1e6 for g in data.groups]
    return costs, "MACs per image (millions)", "M MACs"


def _arch_key(g: Group) -> str:
    r = g.runs[0]
    return repr((g.settings["model"], r.config.get("model_args"), g.settings["dataset"]))


def _cost_text(value: float, unit: str) -> str:
    return f"{ms(value)} ms" if unit == "ms" else f"{value:.3g} M MACs"


def recommendation(data: StudyData) -> tuple[list, list[str]]:
    """Blocks of the trade-off section, and the plain-words picks (reused by the verdict)."""
    costs, label, unit = _cost(data)
    png, front = figs.tradeoff_figure(data.groups, costs, label)
    measure = "latency" if unit == "ms" else "compute"
    words = []
    rows = []
    for j, i in enumerate(front):
        g = data.groups[i]
        nxt = front[j + 1] if j + 1 < len(front) else None
        budget = f"{_cost_text(costs[i], unit)} ≤ budget" + (
            f" < {_cost_text(costs[nxt], unit)}" if nxt is not None else ""
        )
        acc = g.mean("test_acc")
        rows.append(
            [
                Cell(budget, sort=costs[i]),
                Cell(g.label),
                Cell(str(g.settings["dataset"])),
                Cell(pct(acc), sort=_r(acc, 100)),
            ]
        )
        words.append(
            f"with a {measure} budget of at least **{_cost_text(costs[i], unit)}** per image, "
            f"ship **{g.label}** ({pct(acc)} % test accuracy)"
        )
    caption = (
        "Each point is one setting (mean over seeds, bar = ±1 std); black-edged points "
        "form the Pareto front: nothing else is both cheaper and more accurate."
    )
    blocks: list = [[Figure("tradeoff", f"Test accuracy versus {label}", png, caption, wide=True)]]
    if data.has_latency:
        blocks.append(
            "Latency is batch-1 inference on the CPU (`cnnbench.bench`, fastest backend), p50; "
            "settings that share an architecture are placed at the median of its measurements."
        )
    else:
        blocks.append(
            "No batch-1 latency was measured for every run (`cnnbench.bench` writes "
            f"`{rundir.BENCH}`), so the cost axis is MACs, a proxy that ignores memory traffic "
            "and kernel efficiency."
        )
    blocks.append(
        "**Recommendation, most accurate model under each budget:** " + "; ".join(words) + "."
    )
    blocks.append(
        Table(["Budget", "Ship", "Dataset", "Test acc %"], rows, [True, False, False, True])
    )
    datasets = {str(g.settings["dataset"]) for g in data.groups}
    if len(datasets) > 1:
        blocks.append(
            "The study mixes datasets (" + ", ".join(sorted(datasets)) + "); compare "
            "accuracies within one dataset only."
        )
    return blocks, words


def paper_section(data: StudyData) -> list | None:
    matches = [(g, paper_match(g)) for g in data.groups]
    matches = [(g, p) for g, p in matches if p is not None]
    if not matches:
        return None
    rows = []
    for g, paper in matches:
        acc, std = g.mean("test_acc"), g.std("test_acc")
        ours = None if acc is None else 100 * acc
        delta = None if ours is None else ours - paper
        train_n = g.mean("train_images")
        rows.append(
            [
                Cell(str(g.settings["model"])),
                Cell(str(g.settings["optimizer"])),
                Cell(f"{g.settings['lr']:g}", sort=g.settings["lr"]),
                Cell(str(g.settings["epochs"]), sort=g.settings["epochs"]),
                Cell(f"{train_n:,.0f}" if train_n else "–", sort=train_n),
                Cell(
                    pct(acc) + (f" ± {100 * std:.2f}" if std else "") + f" (n={len(g.runs)})",
                    sort=ours,
                ),
                Cell(f"{paper:g}", sort=paper),
                Cell(
                    "–" if delta is None else f"{delta:+.2f}",
                    sort=delta,
                    bold=delta is not None and delta > 0,
                ),
            ]
        )
    smaller = [g for g, _ in matches if (g.mean("train_images") or 0) < 40000]
    headers = ["Architecture", "Optimizer", "LR", "Epochs", "Train images", "Ours %", "Paper %",
               "Δ pp"]  # fmt: skip
    blocks: list = [
        "The paper's Table 1 reports one CIFAR-10 test accuracy per setting (one run, full "
        "training split, about 15-25 epochs). Rows of this study with the same architecture, "
        "optimizer and learning rate on CIFAR-10 are compared below; Δ is ours minus the paper "
        "in percentage points (bold: we beat it).",
        Table(headers, rows, [False, False, True, True, True, True, True, True]),
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
        c_acc = r.summary.get("test_acc")
        ratio = c_acc / p_acc if (p_acc and c_acc is not None) else None
        rows.append(
            [
                Cell(r.name),
                Cell(str(t.get("policy", "–"))),
                Cell(parent_dir.name if parent_dir else f"{t.get('parent')} (not found)"),
                Cell(f"{parent.get('dataset')}" if parent else "–"),
                Cell(str(r.summary.get("dataset"))),
                Cell(pct(p_acc), sort=p_acc),
                Cell(pct(c_acc), sort=c_acc),
                Cell("–" if ratio is None else f"{ratio:.3f}", sort=ratio),
            ]
        )
    for col in (6, 7):
        _bold_best(rows, col, True)
    headers = ["Child run", "Policy", "Parent run", "Parent dataset", "Child dataset",
               "Parent acc %", "Child acc %", "Child / parent"]  # fmt: skip
    return [
        "Fine-tuned children of a parent run. The ratio child / parent compares test "
        "accuracies on each model's own dataset: it says how much of the parent's skill the "
        "policy keeps, not which dataset is harder.",
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
    lat = [r.latency for r in data.runs if r.latency]
    if lat:
        backends = sorted({f"{x.get('backend')} with {x.get('threads')} thread(s)" for x in lat})
        env_rows.append([Cell("Latency measured"), Cell("; ".join(backends))])
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


def _best_group(data: StudyData) -> Group:
    """The most accurate setting (mean test accuracy over its seeds)."""
    return max(data.groups, key=lambda g: g.mean("test_acc") or -1.0)


def _cost_phrase(best: Group) -> str:
    if best.cost_latency is not None:
        return f"{ms(best.cost_latency)} ms per image at batch 1 on the CPU"
    return f"{si(best.mean('macs'))} MACs per image"


def verdict(best: Group) -> list[tuple[str, str, str]]:
    """The headline facts of the best setting: (label, value, detail) rows."""
    acc, std = best.mean("test_acc"), best.std("test_acc")
    epochs = _plural(best.settings["epochs"], "epoch")
    spread = (
        f"± {100 * std:.2f} over {len(best.runs)} seeds"
        if std is not None
        else f"{len(best.runs)} run"
    )
    rows = [
        ("Best model", best.label, f"{best.settings['dataset']}, {epochs}"),
        ("Test accuracy", f"{pct(acc)} %", spread),
    ]
    if best.cost_latency is not None:
        p99 = f"p99 {ms(best.latency('p99_ms'))} ms"
        rows.append(("Batch-1 CPU latency", f"{ms(best.cost_latency)} ms", p99))
    params = f"{si(best.mean('params'))} parameters"
    rows.append(("Cost", f"{si(best.mean('macs'))} MACs", params))
    return rows


def verdict_text(best: Group, words: list[str]) -> str:
    """The verdict in one or two sentences (the cheaper pick too, when there is one)."""
    text = (
        f"**{best.label}** is the most accurate model of this study: "
        f"{pct(best.mean('test_acc'))} % on {best.settings['dataset']} at {_cost_phrase(best)}."
    )
    if words and len(words) > 1:
        text += " On a tighter budget: " + words[0] + "."
    return text


def results_section(data: StudyData) -> Section:
    blocks: list = [
        results_table(data),
        "Test accuracy is measured once per run, on the test split, with the checkpoint of the "
        "best validation epoch; mean ± sample standard deviation over the seeds (n). "
        "Best values per column are bold; click a column header to sort (HTML).",
    ]
    if data.missing:
        listed = ", ".join(f"`{m}`" for m in data.missing)
        blocks.append(f"**{len(data.missing)} run(s) not complete yet** and left out: {listed}.")
    return Section("results", "Results", blocks)


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
        Figure(f"curves-{i:02d}", g.label + f" ({g.settings['dataset']})", figs.curves_figure(g))
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
    trade_blocks, words = recommendation(data)
    runs_text = f"One row per run, numbers exactly as in its `{rundir.SUMMARY}`."
    sections = [
        results,
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
        verdict_text=verdict_text(best, words),
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
