"""`explore`: every statistic and figure of one dataset, written into one folder.

    result = explore_dataset("cifar10", out_dir="runs/explore-cifar10")

writes, into `out_dir`:

| file | what |
| --- | --- |
| `explore.json` | every number (counts, mean/std, duplicates, PCA thresholds, k-NN), the settings, timings per step, `figures` (`[{"title", "path"}]`, paths relative to the folder) and `summary_markdown` (the summary table the study report embeds) |
| `explore.md` | the same for humans, figures embedded |
| `pixel_histogram.png`, `samples.png`, `duplicates.png` (if any), `pca_variance.png`, `pca_scatter.png`, `tsne.png` | the figures |

`explore(ds, out_dir)` does the work on an `ImageDataset`; the statistics themselves live in
`stats`, `embed` and `knn` as functions of plain arrays.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from cnnbench.explore import plots
from cnnbench.explore.embed import balanced_sample, components_for, model_features, pca, tsne_2d
from cnnbench.explore.knn import knn1_predict
from cnnbench.explore.stats import (
    class_counts,
    find_duplicates,
    mean_std_from_histogram,
    pixel_histogram,
)
from cnnbench.fileio import write_json_atomic, write_text_atomic
from cnnbench.progress import progress as progress_bar
from cnnbench.rundir import load_model_from

__all__ = [
    "ClassGroups",
    "ExploreError",
    "ExploreOptions",
    "check_run_dataset",
    "default_out_dir",
    "explore",
    "explore_dataset",
]

_GRID_ROWS = 20  # at most this many rows in the sample grid (and legend entries)
_GRID_COLS = 10  # images per row of the sample grid
_MAX_GROUPS_JSON = 500  # duplicate groups listed in explore.json

RunInfo = tuple[torch.nn.Module, dict[str, Any], str]  # (model, its checkpoint, label)


class ExploreError(ValueError):
    """A request `explore` cannot honour (sample larger than the split, run of another dataset)."""


@dataclass
class ExploreOptions:
    """Sample sizes and the seed; every sample is class-balanced and drawn with `seed`.

    A size left at None takes its default, capped at the split's size (a small image folder
    just works); a size given explicitly must fit in its split, else `ExploreError`.
    """

    tsne_samples: int | None = None  # test images embedded by t-SNE; default 2000
    pca_samples: int | None = None  # train images the PCA is fitted on; default 5000
    knn_train: int | Literal["all"] | None = None  # train images 1-NN searches; default 10000
    seed: int = 0

    DEFAULTS: ClassVar[dict[str, int]] = {
        "tsne_samples": 2000,
        "pca_samples": 5000,
        "knn_train": 10000,
    }


@dataclass
class ClassGroups:
    """A coarser labelling for plots: `of_class[c]` is the group of class `c` (CIFAR-100's 20
    superclasses), so a grid or legend of 100 classes stays readable."""

    names: list[str]
    of_class: np.ndarray  # int64 (num_classes,)


def default_out_dir(name: str) -> Path:
    """runs/explore-<dataset> (an image folder: runs/explore-imagefolder-<folder name>)."""
    base, _, path = name.partition(":")
    suffix = f"-{Path(path).name}" if path else ""
    return Path("runs") / f"explore-{base}{suffix}"


class _Steps:
    """Prints `[i/n] what ...` and `[i/n] what: x s` per step on stderr; records the timings."""

    def __init__(self, label: str, total: int, show: bool) -> None:
        self.label, self.total, self.show = label, total, show
        self.index = 0
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, what: str) -> Iterator[None]:
        self.index += 1
        prefix = f"{self.label}: [{self.index}/{self.total}] {what}"
        if self.show:
            print(f"{prefix} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - start, 2)
        if self.show:
            print(f"{prefix}: {self.timings[key]:.1f} s", file=sys.stderr, flush=True)


def _resolve_sizes(ds: Any, opts: ExploreOptions) -> dict[str, int]:
    """The sample sizes to use: defaults capped at the split, explicit sizes checked."""
    split_size = {"train": len(ds.y_train), "test": len(ds.y_test)}
    if split_size["test"] == 0:
        raise ExploreError(f"{ds.name} has no test images: t-SNE and k-NN need some")
    sizes = {}
    for key, split, low in (
        ("pca_samples", "train", 2),
        ("tsne_samples", "test", 4),
        ("knn_train", "train", 1),
    ):
        value, size = getattr(opts, key), split_size[split]
        flag = "--" + key.replace("_", "-")
        if value is None:
            value = min(ExploreOptions.DEFAULTS[key], size)
        elif value == "all":
            value = size
        elif value > size:
            raise ExploreError(
                f"{flag} {value} is larger than the {split} split of {ds.name} ({size} images)"
            )
        if value < low:
            raise ExploreError(
                f"{flag} must be at least {low}, got {value}"
                + (f" (the {split} split has {size} images)" if size < low else "")
            )
        sizes[key] = int(value)
    return sizes


def _sample_grid_rows(
    x: torch.Tensor, y: np.ndarray, classes: list[str], groups: ClassGroups | None, seed: int
) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Rows of the sample grid and its subtitle: a row per class (or per group, each showing
    its classes in turn; or an evenly spaced subset of classes when there are too many)."""
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(len(classes))]
    rows: list[tuple[str, np.ndarray]] = []
    if groups is not None:
        for g, gname in enumerate(groups.names):
            members = [c for c in np.flatnonzero(groups.of_class == g) if len(by_class[c])]
            picks = [
                by_class[members[i % len(members)]][i // len(members)]
                for i in range(_GRID_COLS)
                if members and i // len(members) < len(by_class[members[i % len(members)]])
            ]
            rows.append((gname.replace("_", " "), x[picks].numpy()))
        return rows, f"a row per superclass ({len(groups.names)}), its classes in turn"
    shown = range(len(classes))
    note = "a row per class"
    if len(classes) > _GRID_ROWS:
        shown = np.linspace(0, len(classes) - 1, _GRID_ROWS).round().astype(int)
        note = f"{_GRID_ROWS} of {len(classes)} classes, evenly spaced"
    for c in shown:
        rows.append((classes[c], x[by_class[c][:_GRID_COLS]].numpy()))
    return rows, note


def _fmt3(v: list[float]) -> str:
    return " ".join(f"{a:.4f}" for a in v)


def _summary_markdown(r: dict[str, Any]) -> str:
    """The summary table the study report embeds (Markdown)."""
    lines = [
        "| split | images | classes | images per class (min / max) | mean (R, G, B) | std (R, G, B) |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for split in ("train", "test"):
        per = list(r["counts"][split]["per_class"].values())
        lines.append(
            f"| {split} | {r['counts'][split]['total']:,} | {len(per)} | "
            f"{min(per):,} / {max(per):,} | {_fmt3(r['mean_std'][split]['mean'])} | "
            f"{_fmt3(r['mean_std'][split]['std'])} |"
        )
    d, p, k = r["duplicates"], r["pca"], r["knn"]
    dup = (
        f"{d['within_train']['redundant']} redundant within train, "
        f"{d['within_test']['redundant']} within test, "
        f"{d['across']['test_images']} test images also in train"
    )
    if d["label_conflicts"]:
        dup += f" ({d['label_conflicts']} duplicate groups disagree on the label)"
    th = p["components_for"]
    pca_s = ", ".join(f"{lv} % in {n}" for lv, n in th.items())
    knn_train = f"{k['train_images']:,} of {r['counts']['train']['total']:,} train images"
    lines += [
        "",
        "| finding | value |",
        "| --- | --- |",
        f"| exact-duplicate images | {dup} |",
        f"| PCA components holding the variance (of {p['dims']:,}, {p['samples']:,} train images) | {pca_s} |",
        f"| 1-NN on raw pixels (L2), test accuracy: the floor a CNN must beat | "
        f"{k['accuracy']:.2%} ({knn_train}, {k['test_images']:,} test images; chance {k['chance']:.2%}) |",
    ]
    return "\n".join(lines)


def _write_markdown(r: dict[str, Any], path: Path) -> None:
    lines = [
        f"# Exploring {r['dataset']}",
        "",
        f"Source: `{r['source']}`",
        "",
        r["summary_markdown"],
        "",
        "## Images per class",
        "",
        "| class | train | test |",
        "| --- | ---: | ---: |",
    ]
    for name, n in r["counts"]["train"]["per_class"].items():
        lines.append(f"| {name} | {n:,} | {r['counts']['test']['per_class'][name]:,} |")
    lines += ["", "## Figures", ""]
    for f in r["figures"]:
        lines += [f"### {f['title']}", "", f"![{f['title']}]({f['path']})", ""]
    lines += [
        "## Settings and timings",
        "",
        "```json",
        json.dumps({"settings": r["settings"], "timings_s": r["timings_s"]}, indent=2),
        "```",
        "",
    ]
    write_text_atomic(path, "\n".join(lines))


@dataclass
class _Job:
    """One exploration in progress: the dataset, where it goes, and what it found so far.

    ``result`` becomes `explore.json` (its keys in the order the steps add them); ``figures``
    lists the PNGs written, as `{"title", "path"}` with paths relative to ``out``.
    """

    ds: Any
    out: Path
    opts: ExploreOptions
    sizes: dict[str, int]
    groups: ClassGroups | None
    classes: list[str] = field(init=False)
    ytr: np.ndarray = field(init=False)  # train labels
    yte: np.ndarray = field(init=False)  # test labels
    result: dict[str, Any] = field(init=False)
    figures: list[dict[str, str]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.classes = list(self.ds.classes)
        self.ytr, self.yte = self.ds.y_train.numpy(), self.ds.y_test.numpy()
        self.result = {"dataset": self.ds.name, "source": self.ds.source, "classes": self.classes}

    @property
    def label_names(self) -> list[str]:
        """Legend entries: the superclasses when grouped, else the classes."""
        return self.groups.names if self.groups is not None else self.classes

    def colour_labels(self, y: np.ndarray) -> np.ndarray:
        return self.groups.of_class[y] if self.groups is not None else y

    def figure(self, title: str, path: Path) -> None:
        self.figures.append({"title": title, "path": path.relative_to(self.out).as_posix()})


def _statistics(job: _Job) -> None:
    """Images per split and class, per-channel mean/std, the pixel histograms."""
    ds, r = job.ds, job.result
    r["image_shape"] = list(ds.x_train.shape[1:])
    r["counts"], r["mean_std"], hists = {}, {}, {}
    for split, x, y in (("train", ds.x_train, job.ytr), ("test", ds.x_test, job.yte)):
        counts = class_counts(y, len(job.classes))
        per_class = dict(zip(job.classes, counts, strict=True))
        r["counts"][split] = {"total": len(y), "per_class": per_class}
        if len(y):
            hists[split] = pixel_histogram(x)
            mean, std = mean_std_from_histogram(hists[split])
            r["mean_std"][split] = {"mean": mean, "std": std}
    path = plots.plot_pixel_histograms(
        hists, job.out / "pixel_histogram.png", f"{ds.name}: pixel values per channel"
    )
    job.figure("Pixel values per channel", path)


def _duplicates(job: _Job) -> None:
    """Exact duplicates within and across the splits (the first groups kept in the JSON)."""
    ds = job.ds
    dups = find_duplicates(ds.x_train, ds.x_test, job.ytr, job.yte)
    job.result["duplicates"] = {
        **{k: v for k, v in dups.items() if k != "groups"},
        "groups": dups["groups"][:_MAX_GROUPS_JSON],
    }
    if dups["groups"]:
        path = plots.plot_duplicates(
            dups["groups"],
            ds.x_train.numpy(),
            ds.x_test.numpy(),
            job.classes,
            job.out / "duplicates.png",
            f"{ds.name}: exact-duplicate images",
        )
        job.figure("Exact-duplicate images", path)


def _samples(job: _Job) -> None:
    """The grid of random train images."""
    ds = job.ds
    rows, note = _sample_grid_rows(ds.x_train, job.ytr, job.classes, job.groups, job.opts.seed)
    title = f"{ds.name}: random train images, {note}"
    job.figure("Sample images", plots.plot_sample_grid(rows, job.out / "samples.png", title))


def _pca(job: _Job) -> None:
    """PCA of a class-balanced train sample: variance curve and the first two components."""
    ds, seed = job.ds, job.opts.seed
    idx = balanced_sample(job.ytr, job.sizes["pca_samples"], seed)
    res = pca(ds.x_train[idx], n_components=50, seed=seed)
    ev = res.explained_variance_ratio
    th = components_for(ev)
    job.result["pca"] = {
        "split": "train",
        "samples": len(idx),
        "dims": int(np.prod(ds.x_train.shape[1:])),
        "components_for": th,
        "explained_variance_ratio_top": [round(float(v), 6) for v in ev[:50]],
    }
    title = f"{ds.name}: PCA on {len(idx):,} train images"
    path = plots.plot_pca_variance(ev, th, job.out / "pca_variance.png", title)
    job.figure("PCA: cumulative explained variance", path)
    panel = (f"PC1 ({ev[0]:.1%}) vs PC2 ({ev[1]:.1%})", res.projection[:, :2])
    title = f"{ds.name}: {len(idx):,} train images on the first two principal components"
    path = plots.plot_scatter(
        [panel],
        job.colour_labels(job.ytr[idx]),
        job.label_names,
        job.out / "pca_scatter.png",
        title,
    )
    job.figure("PCA: the first two components", path)


def _tsne(job: _Job, steps: _Steps, run: RunInfo | None) -> None:
    """t-SNE of a class-balanced test sample: raw pixels and, with a run, its features."""
    ds, seed = job.ds, job.opts.seed
    idx = balanced_sample(job.yte, job.sizes["tsne_samples"], seed)
    panels = []
    with steps.step("tsne_pixels", f"t-SNE of {len(idx):,} test images (raw pixels)"):
        panels.append(("raw pixels", tsne_2d(ds.x_test[idx], seed=seed)))
    tsne = {
        "split": "test",
        "samples": len(idx),
        "pca_dims": 50,
        "perplexity": min(30.0, (len(idx) - 1) / 3),
        "features": None,
    }
    job.result["tsne"] = tsne
    if run is not None:
        model, ckpt, label = run
        with steps.step("tsne_features", f"features of {label} and their t-SNE"):
            feats = model_features(model, ds.x_test[idx], ckpt["mean"], ckpt["std"])
            panel = f"{label}: forward_features ({feats.shape[1]})"
            panels.append((panel, tsne_2d(feats, seed=seed)))
        tsne["features"] = {
            "run": label,
            "model": ckpt["model_spec"].get("name"),
            "num_features": int(feats.shape[1]),
        }
    with steps.step("tsne_figure", "t-SNE figure"):
        title = f"{ds.name}: t-SNE of {len(idx):,} test images"
        path = plots.plot_scatter(
            panels, job.colour_labels(job.yte[idx]), job.label_names, job.out / "tsne.png", title
        )
        what = ": raw pixels vs learned features" if run is not None else " of raw pixels"
        job.figure("t-SNE" + what, path)


def _knn(job: _Job, progress: bool) -> None:
    """The 1-nearest-neighbour floor on raw pixels: train sample against the whole test split."""
    ds, ytr, yte, seed = job.ds, job.ytr, job.yte, job.opts.seed
    n = job.sizes["knn_train"]
    kidx = np.arange(len(ytr)) if n == len(ytr) else balanced_sample(ytr, n, seed)
    with progress_bar(
        total=len(yte), desc="1-NN", unit="img", disable=not progress, leave=False
    ) as bar:
        pred = knn1_predict(ds.x_train[kidx], ds.y_train[kidx], ds.x_test, on_chunk=bar.update)
    job.result["knn"] = {
        "k": 1,
        "metric": "L2 on raw uint8 pixels",
        "accuracy": float((pred == yte).mean()),
        "train_images": len(kidx),
        "train_subset": "all" if len(kidx) == len(ytr) else f"class-balanced, seed {seed}",
        "test_images": len(yte),
        "chance": 1 / len(job.classes),
    }


def _finish(job: _Job, steps: _Steps, run_label: str | None) -> dict[str, Any]:
    """Add the settings, summary and timings; write explore.json and explore.md."""
    r = job.result
    r["figures"] = job.figures
    r["settings"] = {**job.sizes, "seed": job.opts.seed, "run": run_label}
    r["summary_markdown"] = _summary_markdown(r)
    r["timings_s"] = steps.timings
    r["torch_threads"] = torch.get_num_threads()
    write_json_atomic(job.out / "explore.json", r)
    _write_markdown(r, job.out / "explore.md")
    return r


def explore(
    ds: Any,
    out_dir: str | os.PathLike[str],
    *,
    options: ExploreOptions | None = None,
    groups: ClassGroups | None = None,
    run: RunInfo | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Explore an `ImageDataset` into `out_dir`; returns what `explore.json` holds.

    `run = (model, checkpoint, label)` adds the t-SNE of the model's `forward_features` on the
    same test sample (the checkpoint's mean/std normalise the images). `groups` colours and
    groups plots by superclass. `timings` (e.g. the load) are reported before the steps'.
    """
    opts = options or ExploreOptions()
    job = _Job(ds, Path(out_dir), opts, _resolve_sizes(ds, opts), groups)
    job.out.mkdir(parents=True, exist_ok=True)
    steps = _Steps(f"explore {ds.name}", 7 + (run is not None), progress)
    steps.timings.update(timings or {})
    n_images = len(job.ytr) + len(job.yte)
    with steps.step("statistics", "counts, mean/std, pixel histograms"):
        _statistics(job)
    with steps.step("duplicates", f"exact duplicates among {n_images:,} images"):
        _duplicates(job)
    with steps.step("samples", "sample grid"):
        _samples(job)
    with steps.step("pca", f"PCA on {job.sizes['pca_samples']:,} train images"):
        _pca(job)
    _tsne(job, steps, run)  # three steps: pixels, the run's features, the figure
    n_knn = job.sizes["knn_train"]
    with steps.step("knn", f"1-NN on raw pixels: {n_knn:,} train x {len(job.yte):,} test images"):
        _knn(job, progress)
    return _finish(job, steps, run[2] if run is not None else None)


def _dataset_key(name: str, data_dir: str | os.PathLike[str] | None) -> tuple[str, str | None]:
    """(base name, absolute folder or None) that identifies a dataset request."""
    base, _, path = name.strip().partition(":")
    base = base.lower()
    if base != "imagefolder":
        return base, None
    folder = path or (os.fspath(data_dir) if data_dir else None)
    return base, os.path.abspath(os.path.expanduser(folder)) if folder else None


def check_run_dataset(config: dict[str, Any], name: str, data_dir: Any = None) -> None:
    """Raise `ExploreError` if a run's config names another dataset than `name`."""
    run_key = _dataset_key(str(config.get("dataset", "")), config.get("data_dir"))
    key = _dataset_key(name, data_dir)
    same = run_key[0] == key[0] and (run_key[1] is None or key[1] is None or run_key[1] == key[1])
    if not same:
        shown = config.get("dataset") + (f" ({run_key[1]})" if run_key[1] else "")
        raise ExploreError(
            f"the run was trained on {shown}, not on {name}"
            + (f" ({key[1]})" if key[1] else "")
            + ": explore the run's dataset, or drop --run"
        )


def _cifar100_groups(data_dir: Any, fine: np.ndarray, classes: list[str]) -> ClassGroups:
    """CIFAR-100's superclass of each fine class, read from the coarse labels of the data."""
    from cnnbench.data import load_dataset

    coarse = load_dataset("cifar100", data_dir=data_dir, label_kind="coarse", show_progress=False)
    yc = coarse.y_train.numpy()
    of_class = np.zeros(len(classes), dtype=np.int64)
    for c in range(len(classes)):
        supers = np.unique(yc[fine == c])
        if len(supers) != 1:  # every fine class lies in exactly one superclass
            raise ExploreError(f"cifar100 class {classes[c]} has {len(supers)} superclasses")
        of_class[c] = supers[0]
    return ClassGroups(names=list(coarse.classes), of_class=of_class)


def _load_run(path: Path) -> RunInfo:
    """(model, checkpoint, label) of a run directory (its best checkpoint) or a .pt file."""
    model, ckpt = load_model_from(path)
    return model, ckpt, path.name if path.is_dir() else f"{path.parent.name}/{path.name}"


def explore_dataset(
    name: str,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    run: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    download: bool = False,
    options: ExploreOptions | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Load dataset `name` (as `cnnbench.data.load_dataset`) and `explore` it into `out_dir`
    (default `runs/explore-<dataset>`). `run`: a run directory or checkpoint whose model's
    features are embedded too; it must have been trained on the same dataset. An image
    folder's `image_size` defaults to the run's, else 32."""
    from cnnbench.data import DataError, list_datasets, load_dataset

    base = name.strip().partition(":")[0].lower()
    if base not in list_datasets():
        raise DataError(
            f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())} "
            "(or imagefolder:<path>)"
        )
    run_info = None
    if run is not None:  # checked first: a mismatch fails before the data is loaded
        run_info = _load_run(Path(run))
        cfg = run_info[1].get("config") or {}
        check_run_dataset(cfg, name, data_dir)
        if image_size is None:
            image_size = int(cfg.get("image_size", 32)) if base == "imagefolder" else None
    start = time.perf_counter()
    ds = load_dataset(
        name,
        data_dir=data_dir,
        download=download,
        image_size=image_size or 32,
        show_progress=progress,
    )
    groups = (
        _cifar100_groups(data_dir, ds.y_train.numpy(), ds.classes)
        if ds.name == "cifar100"
        else None
    )
    load_s = round(time.perf_counter() - start, 2)
    if progress:
        print(
            f"explore {ds.name}: loaded {len(ds.y_train):,} train + {len(ds.y_test):,} test "
            f"images in {load_s:.1f} s",
            file=sys.stderr,
        )
    return explore(
        ds,
        out_dir or default_out_dir(ds.name),
        options=options,
        groups=groups,
        run=run_info,
        progress=progress,
        timings={"load": load_s},
    )
