"""The report's figures, drawn with matplotlib's Agg backend and returned as PNG bytes.

One look, every figure: a title, labelled axes with units, a light grid, one colour per
compared setting (validation solid, training dashed), seeds as thin lines around their mean.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnbench.report.collect import Group, StudyData, pareto_front

_DPI = 110
_COLORS = (
    "#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed",
    "#0891b2", "#db2777", "#65a30d", "#475569", "#ea580c",
)  # fmt: skip
_AXIS_LABELS = {
    "lr": "learning rate",
    "optimizer": "optimizer",
    "model": "architecture",
    "dataset": "dataset",
    "epochs": "epochs",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "legend.frameon": False,
            "legend.fontsize": 8,
            "figure.facecolor": "white",
            "axes.facecolor": "white",
        }
    )
    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _series(group: Group, key: str) -> tuple[list[list[int]], list[list[float]]]:
    xs, ys = [], []
    for run in group.runs:
        rows = [m for m in run.metrics if m.get(key) is not None]
        xs.append([int(m["epoch"]) for m in rows])
        ys.append([float(m[key]) for m in rows])
    return xs, ys


def _mean_curve(xs: list[list[int]], ys: list[list[float]]) -> tuple[list[int], list[float]]:
    """Mean over seeds at each epoch every seed reached."""
    if not xs:
        return [], []
    common = sorted(set.intersection(*(set(x) for x in xs)))
    lookup = [dict(zip(x, y, strict=True)) for x, y in zip(xs, ys, strict=True)]
    return common, [sum(d[e] for d in lookup) / len(lookup) for e in common]


def _plot_group(
    ax: Any, group: Group, key: str, color: str, style: str, label: str | None, scale: float = 1.0
) -> None:
    xs, ys = _series(group, key)
    if len(xs) > 1:  # seeds: thin lines, the mean on top
        for x, y in zip(xs, ys, strict=True):
            ax.plot(x, [v * scale for v in y], style, color=color, lw=0.7, alpha=0.35)
    mx, my = _mean_curve(xs, ys)
    ax.plot(
        mx,
        [v * scale for v in my],
        style,
        color=color,
        lw=1.8,
        label=label,
        marker="o" if len(mx) <= 12 else None,
        ms=3,
    )


def _epoch_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def curves_figure(group: Group) -> bytes:
    """Loss and accuracy per epoch of one seed group (training dashed, validation solid)."""
    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(4.9, 4.6), sharex=True)
    for key, color, style, label in (
        ("train_loss", _COLORS[0], "--", "training"),
        ("val_loss", _COLORS[1], "-", "validation"),
    ):
        _plot_group(ax_loss, group, key, color, style, label)
    for key, color, style, label in (
        ("train_acc", _COLORS[0], "--", "training"),
        ("val_acc", _COLORS[1], "-", "validation"),
    ):
        _plot_group(ax_acc, group, key, color, style, label, scale=100)
    ax_loss.set_ylabel("loss (cross-entropy)")
    ax_acc.set_ylabel("accuracy (%)")
    _epoch_axis(ax_acc)
    ax_loss.legend(loc="upper right")
    n = len(group.runs)
    seeds = f" ({n} seeds)" if n > 1 else ""
    failed = " — did not learn" if group.did_not_learn else ""
    ax_loss.set_title(f"{group.label}\n{group.settings['dataset']}{seeds}{failed}", fontsize=9.5)
    fig.tight_layout()
    return _png(fig)


def _panels(groups: Sequence[Group], keys: tuple[str, ...]) -> list[list[Group]]:
    """Groups equal in every setting but ``keys``, bunched; only bunches of two or more."""
    panels: dict[str, list[Group]] = {}
    for g in groups:
        ctx = sorted((k, repr(v)) for k, v in g.settings.items() if k not in keys)
        panels.setdefault(repr(ctx), []).append(g)
    return [v for v in panels.values() if len(v) > 1]


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def comparisons(data: StudyData) -> list[tuple[str, str, bytes, int]]:
    """One figure per varied setting (learning rate, optimizer, architecture...): panels of
    runs equal in everything else, one validation-accuracy curve per value of that setting.
    An optimizer that always comes with its own learning rate is compared as the pair.

    Returns ``(slug, title, png, panels)``; settings that never pair two groups give no figure.
    """
    plt = _plt()
    out = []
    for axis in [k for k in data.columns if k in data.varied]:
        keys: tuple[str, ...] = (axis,)
        items = _panels(data.groups, keys)
        if not items and axis == "optimizer" and "lr" in data.varied:
            keys = ("optimizer", "lr")
            items = _panels(data.groups, keys)
        if not items:
            continue
        items = items[:12]
        cols = min(3, len(items))
        rows = -(-len(items) // cols)
        fig, axs = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.1 * rows), squeeze=False)
        for ax in axs.flat[len(items) :]:
            ax.set_visible(False)
        name = _AXIS_LABELS.get(axis, axis.replace("_", " "))
        legend = name if len(keys) == 1 else "optimizer · lr"
        for ax, groups in zip(axs.flat, items, strict=False):
            ctx = {k: v for k, v in groups[0].settings.items() if k not in keys}
            ordered = sorted(groups, key=lambda g: [str(g.settings[k]) for k in keys])
            for i, g in enumerate(ordered):
                color = _COLORS[i % len(_COLORS)]
                label = " · ".join(_value_text(g.settings[k]) for k in keys)
                label += " (did not learn)" if g.did_not_learn else ""
                _plot_group(ax, g, "val_acc", color, "-", label, scale=100)
                _plot_group(ax, g, "train_acc", color, ":", None, scale=100)
            ax.set_title(_context_title(ctx), fontsize=9)
            ax.set_ylabel("accuracy (%)")
            _epoch_axis(ax)
            ax.legend(title=legend, loc="lower right", title_fontsize=8)
        title = f"Effect of the {name}" + (
            " (each with its learning rate)" if len(keys) > 1 else ""
        )
        fig.suptitle(f"{title}: validation solid, training dotted", fontsize=10, fontweight="bold")
        fig.tight_layout()
        out.append((f"effect-{axis}", title, _png(fig), len(items)))
    return out


def _context_title(ctx: dict[str, Any]) -> str:
    parts = []
    for k, v in ctx.items():
        if k == "lr":
            parts.append(f"lr {v:g}")
        elif k == "epochs":
            parts.append(f"{v} ep")
        elif k in ("model", "optimizer", "dataset"):
            parts.append(str(v))
        else:
            parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    text = " · ".join(parts)
    return text if len(text) <= 48 else text[:46] + "…"


@dataclass
class Point:
    """One model on the trade-off figure: a study setting or a zoo model."""

    label: str
    cost: float
    acc: float  # test accuracy, %
    err: float | None  # ± in percentage points (seed std or binomial SE)
    model: str  # the architecture: one colour each
    zoo: bool = False
    failed: bool = False  # did not learn: drawn, never on the front


def _draw_points(ax: Any, points: Sequence[Point], front: list[int], models: list[str]) -> None:
    """Each model as a marker with its error bar: study runs dots, zoo models diamonds, runs
    that did not learn grey crosses; the front black-edged."""
    for i, p in enumerate(points):
        color = "#9ca3af" if p.failed else _COLORS[models.index(p.model) % len(_COLORS)]
        on_front = i in front
        ax.errorbar(
            p.cost,
            p.acc,
            yerr=p.err if p.err else None,
            fmt="x" if p.failed else ("D" if p.zoo else "o"),
            color=color,
            ms=7 if on_front else 5,
            mec="black" if on_front else color,
            mew=1.2 if on_front or p.failed else 0,
            alpha=0.95,
            capsize=3,
            zorder=3,
        )


def tradeoff_figure(
    points: Sequence[Point], cost_label: str, log_x: bool = True
) -> tuple[bytes, list[int]]:
    """Test accuracy versus cost, uncertainty as error bars, the Pareto front of the models
    that learned drawn as a step line; zoo models are diamonds, runs that did not learn grey
    crosses. Returns the PNG and the indices of the front (by increasing cost)."""
    plt = _plt()
    eligible = [i for i, p in enumerate(points) if not p.failed]
    sub = pareto_front([(points[i].cost, points[i].acc) for i in eligible])
    front = [eligible[j] for j in sub]
    models = sorted({p.model for p in points})
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    _draw_points(ax, points, front, models)
    ax.step(
        [points[i].cost for i in front],
        [points[i].acc for i in front],
        where="post",
        color="#111827",
        lw=1.2,
        ls="--",
        zorder=2,
        label="Pareto front (best accuracy at each cost)",
    )
    for i in front:
        ax.annotate(
            points[i].label,
            (points[i].cost, points[i].acc),
            textcoords="offset points",
            xytext=(6, -11),
            fontsize=7.5,
            color="#111827",
        )
    for j, m in enumerate(models):
        ax.plot([], [], "o", color=_COLORS[j % len(_COLORS)], label=m)
    if any(p.zoo for p in points):
        ax.plot([], [], "D", color="#6b7280", label="zoo model (shipped, not trained here)")
    if any(p.failed for p in points):
        ax.plot([], [], "x", color="#9ca3af", mew=1.2, label="did not learn")
    costs = [p.cost for p in points]
    if log_x and costs and min(costs) > 0 and max(costs) / min(costs) > 5:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy versus {cost_label.split(' (')[0]}: up and to the left is better")
    ax.legend(loc="best")
    fig.tight_layout()
    return _png(fig), front
