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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from cnnbench.explore import plots
from cnnbench.explore.embed import balanced_sample, components_for, model_features, pca, tsne_2d
from cnnbench.explore.knn import knn1_predict
from cnnbench.explore.stats import (
    class_counts,
    find_duplicates,
    mean_std_from_histogram,
    pixel_histogram,
)

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

    DEFAULTS: ClassVar[dict[str, int]] = {"tsne_samples": 2000, "pca_samples": 5000,
                                          "knn_train": 10000}  # fmt: skip


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
        if self.show:
            print(f"{self.label}: [{self.index}/{self.total}] {what} ...", file=sys.stderr,
                  flush=True)  # fmt: skip
        start = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - start, 2)
        if self.show:
            print(f"{self.label}: [{self.index}/{self.total}] {what}: {self.timings[key]:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip


def _resolve_sizes(ds: Any, opts: ExploreOptions) -> dict[str, int]:
    """The sample sizes to use: defaults capped at the split, explicit sizes checked."""
    split_size = {"train": len(ds.y_train), "test": len(ds.y_test)}
    if split_size["test"] == 0:
        raise ExploreError(f"{ds.name} has no test images: t-SNE and k-NN need some")
    sizes = {}
    for key, split, low in (("pca_samples", "train", 2), ("tsne_samples", "test", 4),
                            ("knn_train", "train", 1)):  # fmt: skip
        value, size = getattr(opts, key), split_size[split]
        flag = "--" + key.replace("_", "-")
        if value is None:
            value = min(ExploreOptions.DEFAULTS[key], size)
        elif value == "all":
            value = size
        elif value > size:
            raise ExploreError(f"{flag} {value} is larger than the {split} split of {ds.name} "
                               f"({size} images)")  # fmt: skip
        if value < low:
            raise ExploreError(f"{flag} must be at least {low}, got {value}"
                               + (f" (the {split} split has {size} images)" if size < low else ""))  # fmt: skip
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
            picks = [by_class[members[i % len(members)]][i // len(members)]
                     for i in range(_GRID_COLS)
                     if members and i // len(members) < len(by_class[members[i % len(members)]])]  # fmt: skip
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
    lines = [f"# Exploring {r['dataset']}", "", f"Source: `{r['source']}`", "",
             r["summary_markdown"], "", "## Images per class", "",
             "| class | train | test |", "| --- | ---: | ---: |"]  # fmt: skip
    for name, n in r["counts"]["train"]["per_class"].items():
        lines.append(f"| {name} | {n:,} | {r['counts']['test']['per_class'][name]:,} |")
    lines += ["", "## Figures", ""]
    for f in r["figures"]:
        lines += [f"### {f['title']}", "", f"![{f['title']}]({f['path']})", ""]
    lines += ["## Settings and timings", "", "```json",
              json.dumps({"settings": r["settings"], "timings_s": r["timings_s"]}, indent=2),
              "```", ""]  # fmt: skip
    path.write_text("\n".join(lines))


def explore(
    ds: Any,
    out_dir: str | os.PathLike[str],
    *,
    options: ExploreOptions | None = None,
    groups: ClassGroups | None = None,
    run: tuple[torch.nn.Module, dict[str, Any], str] | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Explore an `ImageDataset` into `out_dir`; returns what `explore.json` holds.

    `run = (model, checkpoint, label)` adds the t-SNE of the model's `forward_features` on the
    same test sample (the checkpoint's mean/std normalise the images). `groups` colours and
    groups plots by superclass. `timings` (e.g. the load) are reported before the steps'.
    """
    opts = options or ExploreOptions()
    sizes = _resolve_sizes(ds, opts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = list(ds.classes)
    ytr, yte = ds.y_train.numpy(), ds.y_test.numpy()
    label_names = groups.names if groups is not None else classes

    def colour_labels(y: np.ndarray) -> np.ndarray:
        return groups.of_class[y] if groups is not None else y

    steps = _Steps(f"explore {ds.name}", 7 + (run is not None), progress)
    if timings:
        steps.timings.update(timings)
    r: dict[str, Any] = {"dataset": ds.name, "source": ds.source, "classes": classes}
    figures: list[dict[str, str]] = []

    def figure(title: str, path: Path) -> None:
        figures.append({"title": title, "path": path.relative_to(out).as_posix()})

    with steps.step("statistics", "counts, mean/std, pixel histograms"):
        r["image_shape"] = list(ds.x_train.shape[1:])
        r["counts"], r["mean_std"], hists = {}, {}, {}
        for split, x, y in (("train", ds.x_train, ytr), ("test", ds.x_test, yte)):
            counts = class_counts(y, len(classes))
            r["counts"][split] = {
                "total": len(y),
                "per_class": dict(zip(classes, counts, strict=True)),
            }
            if len(y):
                hists[split] = pixel_histogram(x)
                mean, std = mean_std_from_histogram(hists[split])
                r["mean_std"][split] = {"mean": mean, "std": std}
        figure("Pixel values per channel",
               plots.plot_pixel_histograms(hists, out / "pixel_histogram.png",
                                           f"{ds.name}: pixel values per channel"))  # fmt: skip

    with steps.step("duplicates", f"exact duplicates among {len(ytr) + len(yte):,} images"):
        dups = find_duplicates(ds.x_train, ds.x_test, ytr, yte)
        r["duplicates"] = {**{k: v for k, v in dups.items() if k != "groups"},
                           "groups": dups["groups"][:_MAX_GROUPS_JSON]}  # fmt: skip
        if dups["groups"]:
            figure("Exact-duplicate images",
                   plots.plot_duplicates(dups["groups"], ds.x_train.numpy(), ds.x_test.numpy(),
                                         classes, out / "duplicates.png",
                                         f"{ds.name}: exact-duplicate images"))  # fmt: skip

    with steps.step("samples", "sample grid"):
        rows, note = _sample_grid_rows(ds.x_train, ytr, classes, groups, opts.seed)
        figure("Sample images",
               plots.plot_sample_grid(rows, out / "samples.png",
                                      f"{ds.name}: random train images, {note}"))  # fmt: skip

    with steps.step("pca", f"PCA on {sizes['pca_samples']:,} train images"):
        idx = balanced_sample(ytr, sizes["pca_samples"], opts.seed)
        res = pca(ds.x_train[idx], n_components=50, seed=opts.seed)
        th = components_for(res.explained_variance_ratio)
        r["pca"] = {
            "split": "train",
            "samples": len(idx),
            "dims": int(np.prod(ds.x_train.shape[1:])),
            "components_for": th,
            "explained_variance_ratio_top": [
                round(float(v), 6) for v in res.explained_variance_ratio[:50]
            ],
        }
        figure("PCA: cumulative explained variance",
               plots.plot_pca_variance(res.explained_variance_ratio, th, out / "pca_variance.png",
                                       f"{ds.name}: PCA on {len(idx):,} train images"))  # fmt: skip
        ev = res.explained_variance_ratio
        figure("PCA: the first two components",
               plots.plot_scatter([(f"PC1 ({ev[0]:.1%}) vs PC2 ({ev[1]:.1%})", res.projection[:, :2])],
                                  colour_labels(ytr[idx]), label_names, out / "pca_scatter.png",
                                  f"{ds.name}: {len(idx):,} train images on the first two principal components"))  # fmt: skip

    tsne_idx = balanced_sample(yte, sizes["tsne_samples"], opts.seed)
    panels = []
    with steps.step("tsne_pixels", f"t-SNE of {len(tsne_idx):,} test images (raw pixels)"):
        panels.append(("raw pixels", tsne_2d(ds.x_test[tsne_idx], seed=opts.seed)))
    r["tsne"] = {"split": "test", "samples": len(tsne_idx), "pca_dims": 50,
                 "perplexity": min(30.0, (len(tsne_idx) - 1) / 3), "features": None}  # fmt: skip
    if run is not None:
        model, ckpt, label = run
        with steps.step("tsne_features", f"features of {label} and their t-SNE"):
            feats = model_features(model, ds.x_test[tsne_idx], ckpt["mean"], ckpt["std"])
            panels.append((f"{label}: forward_features ({feats.shape[1]})",
                           tsne_2d(feats, seed=opts.seed)))  # fmt: skip
        r["tsne"]["features"] = {"run": label, "model": ckpt["model_spec"].get("name"),
                                 "num_features": int(feats.shape[1])}  # fmt: skip
    with steps.step("tsne_figure", "t-SNE figure"):
        title = f"{ds.name}: t-SNE of {len(tsne_idx):,} test images"
        figure("t-SNE" + (": raw pixels vs learned features" if run is not None else " of raw pixels"),
               plots.plot_scatter(panels, colour_labels(yte[tsne_idx]), label_names,
                                  out / "tsne.png", title))  # fmt: skip

    n_knn = sizes["knn_train"]
    with steps.step("knn", f"1-NN on raw pixels: {n_knn:,} train x {len(yte):,} test images"):
        kidx = np.arange(len(ytr)) if n_knn == len(ytr) else balanced_sample(ytr, n_knn, opts.seed)
        with tqdm(
            total=len(yte), desc="1-NN", unit="img", disable=not progress, leave=False
        ) as bar:
            pred = knn1_predict(ds.x_train[kidx], ds.y_train[kidx], ds.x_test, on_chunk=bar.update)
        r["knn"] = {
            "k": 1,
            "metric": "L2 on raw uint8 pixels",
            "accuracy": float((pred == yte).mean()),
            "train_images": len(kidx),
            "train_subset": "all" if len(kidx) == len(ytr) else f"class-balanced, seed {opts.seed}",
            "test_images": len(yte),
            "chance": 1 / len(classes),
        }

    r["figures"] = figures
    r["settings"] = {**sizes, "seed": opts.seed, "run": run[2] if run is not None else None}
    r["summary_markdown"] = _summary_markdown(r)
    r["timings_s"] = steps.timings
    r["torch_threads"] = torch.get_num_threads()
    (out / "explore.json").write_text(json.dumps(r, indent=2) + "\n")
    _write_markdown(r, out / "explore.md")
    return r


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
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())} "
                        "(or imagefolder:<path>)")  # fmt: skip
    run_info = None
    if run is not None:  # checked first: a mismatch fails before the data is loaded
        from cnnbench.train import model_from_checkpoint

        path = Path(run)
        model, ckpt = model_from_checkpoint(path / "best.pt" if path.is_dir() else path)
        cfg = ckpt.get("config") or {}
        check_run_dataset(cfg, name, data_dir)
        if image_size is None:
            image_size = int(cfg.get("image_size", 32)) if base == "imagefolder" else None
        run_info = (model, ckpt, path.name if path.is_dir() else f"{path.parent.name}/{path.name}")
    start = time.perf_counter()
    ds = load_dataset(name, data_dir=data_dir, download=download,
                      image_size=image_size or 32, show_progress=progress)  # fmt: skip
    groups = (
        _cifar100_groups(data_dir, ds.y_train.numpy(), ds.classes)
        if ds.name == "cifar100"
        else None
    )
    load_s = round(time.perf_counter() - start, 2)
    if progress:
        print(f"explore {ds.name}: loaded {len(ds.y_train):,} train + {len(ds.y_test):,} test "
              f"images in {load_s:.1f} s", file=sys.stderr)  # fmt: skip
    return explore(ds, out_dir or default_out_dir(ds.name), options=options, groups=groups,
                   run=run_info, progress=progress, timings={"load": load_s})  # fmt: skip
