"""The two figures of a measurement: accuracy per corruption x severity (a heat map) and one
test image through every corruption (a grid). Both return PNG bytes (matplotlib's Agg canvas,
no pyplot)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    return Figure(figsize=(width, height), layout="constrained")


def heatmap_png(report: dict[str, Any], title: str) -> bytes:
    """Accuracy (%) per corruption (rows, grouped) x severity (columns), with mCA and clean."""
    names = report["corruptions"]
    levels = [str(s) for s in report["severities"]]
    acc = np.array([[report["per_corruption"][c]["severity"][s]["acc"] for s in levels]
                    for c in names]) * 100  # fmt: skip
    fig = _figure(1.2 + 0.7 * len(levels), 0.9 + 0.32 * len(names))
    ax = fig.add_subplot()
    im = ax.imshow(
        acc, cmap="viridis", vmin=0, vmax=max(100 * report["clean_acc"], 1), aspect="auto"
    )
    for i in range(len(names)):
        for j in range(len(levels)):
            v = acc[i, j]
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if v < 0.6 * 100 * report["clean_acc"] else "black")  # fmt: skip
    ax.set_xticks(range(len(levels)), levels)
    ax.set_yticks(
        range(len(names)), [f"{c} ({report['per_corruption'][c]['group']})" for c in names]
    )
    ax.set_xlabel("severity")
    fig.colorbar(im, ax=ax, label="accuracy %", fraction=0.05)
    ax.set_title(f"{title}: mCA {100 * report['mca']:.1f} %, clean {100 * report['clean_acc']:.1f} %"
                 f"\n{report['images']:,} test images", fontsize=9)  # fmt: skip
    return _png(fig)


def samples_png(
    samples: dict[str, Any], title: str, severities: tuple[int, ...] = (1, 3, 5)
) -> bytes:
    """Test image 0 clean and through every corruption at ``severities`` (those measured)."""
    cells = samples["cells"]
    names = list(dict.fromkeys(c for c, _ in cells))
    levels = [s for s in severities if any((c, s) in cells for c in names)]
    if not levels:
        levels = sorted({s for _, s in cells})
    cols = 1 + len(levels)
    fig = _figure(1.1 * cols + 0.8, 1.0 * len(names) + 0.4)
    for i, name in enumerate(names):
        for j in range(cols):
            ax = fig.add_subplot(len(names), cols, i * cols + j + 1)
            img = samples["clean"] if j == 0 else cells.get((name, levels[j - 1]))
            if img is not None:
                ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("clean" if j == 0 else f"severity {levels[j - 1]}", fontsize=7)
            if j == 0:
                ax.set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=8)
    return _png(fig)
