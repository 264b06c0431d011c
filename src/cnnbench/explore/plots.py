"""The figures of `cnnbench explore`, one PNG each, drawn with matplotlib's Agg canvas.

Figures are built as `matplotlib.figure.Figure` objects (no pyplot global state, no display
needed); each function writes one file and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnbench.fileio import write_atomic

__all__ = [
    "class_colours",
    "plot_duplicates",
    "plot_pca_variance",
    "plot_pixel_histograms",
    "plot_sample_grid",
    "plot_scatter",
]

_DPI = 110
_CHANNELS = (("R", "tab:red"), ("G", "tab:green"), ("B", "tab:blue"))


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (PNG)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=_DPI, bbox_inches="tight"))
    return path


def _hwc(img: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W, C) for imshow."""
    return np.asarray(img).transpose(1, 2, 0)


def class_colours(num_classes: int) -> list[Any]:
    """One colour per class: tab10 / tab20 while a legend is readable, else a smooth map."""
    from matplotlib import colormaps

    if num_classes <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(num_classes)]
    if num_classes <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(num_classes)]
    cmap = colormaps["turbo"]
    return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]


def plot_pixel_histograms(hists: dict[str, np.ndarray], path: str | Path, title: str) -> Path:
    """Pixel-value distribution per channel; one panel per split (`hists[split]`: (C, 256))."""
    fig = Figure(figsize=(5 * len(hists), 3.4), layout="constrained")
    axes = fig.subplots(1, len(hists), squeeze=False)[0]
    for ax, (split, h) in zip(axes, hists.items(), strict=True):
        h = np.asarray(h, dtype=np.float64)
        for c, (name, colour) in enumerate(_CHANNELS[: len(h)]):
            ax.plot(np.arange(256), h[c] / h[c].sum(), color=colour, lw=1.2, label=name)
        ax.set_title(f"{split} split")
        ax.set_xlabel("pixel value (uint8)")
        ax.set_ylabel("fraction of pixels")
        ax.set_xlim(0, 255)
        ax.legend(frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def plot_sample_grid(rows: Sequence[tuple[str, np.ndarray]], path: str | Path, title: str) -> Path:
    """A row of images per class: `rows[i] = (row label, uint8 images (k, C, H, W))`.

    The images are pasted into one mosaic (one `imshow`, 1-pixel white gaps): a 20 x 10 grid
    as separate axes takes seconds to draw.
    """
    cols = max((len(imgs) for _, imgs in rows), default=1)
    c, h, w = next(imgs.shape[1:] for _, imgs in rows if len(imgs))
    gap = max(1, h // 16)
    mosaic = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, c), 255, np.uint8)
    for r, (_, imgs) in enumerate(rows):
        for i, img in enumerate(imgs):
            y0, x0 = r * (h + gap), i * (w + gap)
            mosaic[y0 : y0 + h, x0 : x0 + w] = _hwc(img)
    fig = Figure(figsize=(0.9 * cols + 2.2, 0.9 * len(rows) + 0.5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(rows))], [label for label, _ in rows])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    return _save(fig, path)


def plot_duplicates(
    groups: Sequence[dict[str, Any]],
    x_train: np.ndarray,
    x_test: np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    title: str,
    max_groups: int = 30,
) -> Path:
    """Thumbnails of exact-duplicate groups side by side, each image titled with its split,
    index and label (red: the copies disagree on the class)."""
    shown = list(groups)[:max_groups]
    cols = max(len(g["train"]) + len(g["test"]) for g in shown)
    across = max(1, 6 // cols)  # groups side by side per figure row, an empty column between
    per_row = across * (cols + 1) - 1
    nrows = -(-len(shown) // across)
    widths = [0.3 if (j + 1) % (cols + 1) == 0 else 1.0 for j in range(per_row)]
    fig = Figure(figsize=(1.1 * sum(widths), 1.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, per_row, squeeze=False, width_ratios=widths)
    for ax in axes.flat:
        ax.axis("off")
    for gi, g in enumerate(shown):
        members = [("train", i, x_train[i]) for i in g["train"]]
        members += [("test", i, x_test[i]) for i in g["test"]]
        labels = g.get("labels", [None] * len(members))
        conflict = len(set(labels)) > 1
        for mi, ((split, i, img), lab) in enumerate(zip(members, labels, strict=True)):
            ax = axes[gi // across, (gi % across) * (cols + 1) + mi]
            ax.imshow(_hwc(img), interpolation="nearest")
            name = "" if lab is None else f"\n{classes[lab]}"
            ax.set_title(f"{split} #{i}{name}", fontsize=7, color="red" if conflict else "black")
    more = len(groups) - len(shown)
    fig.suptitle(
        title
        + (f" (first {len(shown)} of {len(groups)} groups)" if more else "")
        + "\nred: the copies carry different labels",
        fontsize=10,
    )
    return _save(fig, path)


def plot_pca_variance(
    ratio: np.ndarray, thresholds: dict[str, int], path: str | Path, title: str
) -> Path:
    """Cumulative explained variance against the number of components, thresholds marked."""
    cum = np.cumsum(ratio)
    k = np.arange(1, len(cum) + 1)
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(k, cum, color="tab:blue", lw=1.6)
    for level, n in thresholds.items():
        y = float(level) / 100
        ax.axhline(y, color="grey", lw=0.7, ls=":")
        ax.axvline(n, color="grey", lw=0.7, ls=":")
        ax.annotate(
            f"{level} %: {n}", (n, y), xytext=(4, -12), textcoords="offset points", fontsize=8
        )
    ax.set_xscale("log")
    ax.set_xlabel("number of principal components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title)
    return _save(fig, path)


def plot_scatter(
    panels: Sequence[tuple[str, np.ndarray]],
    labels: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    title: str,
) -> Path:
    """Side-by-side 2-D scatters of the same points (`panels[i] = (title, (N, 2))`), coloured
    by `labels` into `names`; a shared legend while there are at most 20 classes.

    Points are drawn in a fixed random order, so no class is painted over all the others.
    """
    from matplotlib.lines import Line2D

    labels = np.asarray(labels)
    colours = np.array(class_colours(len(names)))
    order = np.random.default_rng(0).permutation(len(labels))
    legend = len(names) <= 20
    fig = Figure(figsize=(4.6 * len(panels) + (2.0 if legend else 0.2), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    size = float(np.clip(8000 / max(len(labels), 1), 2, 14))
    for ax, (panel_title, xy) in zip(axes, panels, strict=True):
        xy = np.asarray(xy)[order]
        ax.scatter(xy[:, 0], xy[:, 1], s=size, c=colours[labels[order]], alpha=0.8, linewidths=0)
        ax.set_title(panel_title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_box_aspect(1)
    if legend:
        handles = [
            Line2D([], [], ls="", marker="o", ms=6, color=colours[c]) for c in range(len(names))
        ]
        fig.legend(
            handles,
            [n.replace("_", " ") for n in names],
            loc="outside right center",
            frameon=False,
            fontsize=8,
        )
    else:
        title += f" ({len(names)} classes, legend omitted)"
    fig.suptitle(title)
    return _save(fig, path)
