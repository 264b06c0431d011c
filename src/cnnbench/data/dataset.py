"""`ImageDataset` (a whole dataset as in-memory uint8 tensors), `load_dataset`, the split."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from cnnbench.data.imagefolder import read_imagefolder
from cnnbench.data.sources import DataError, RawSplits, load_cifar

__all__ = [
    "ImageDataset",
    "channel_mean_std",
    "list_datasets",
    "load_dataset",
    "stratified_sample",
    "train_val_split",
]

_DATASETS = ("cifar10", "cifar100", "imagefolder")

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]


def list_datasets() -> list[str]:
    """Names `load_dataset` accepts (`imagefolder` also as `imagefolder:<path>`)."""
    return list(_DATASETS)


def channel_mean_std(x: torch.Tensor, chunk: int = 2048) -> Stats:
    """Per-channel mean and (population) std of uint8 (N, C, H, W) images, in [0, 1].

    Exact: a 256-bin histogram per channel is accumulated over chunks of `chunk` images
    (a few tens of MB each), then the moments are taken in float64.
    """
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError("no images to compute statistics on")
    channels = x.shape[1]
    hist = torch.zeros(channels * 256, dtype=torch.int64, device=x.device)
    offset = (torch.arange(channels, dtype=torch.int32, device=x.device) * 256).view(1, -1, 1)
    for c in x.split(chunk):
        bins = c.reshape(len(c), channels, -1).to(torch.int32) + offset
        hist += torch.bincount(bins.flatten(), minlength=channels * 256)
    h = hist.view(channels, 256).double().cpu()
    v = torch.arange(256, dtype=torch.float64)
    n = h.sum(1)
    mean = (h * v).sum(1) / n
    var = ((h * (v - mean[:, None]) ** 2).sum(1) / n).clamp_min(0)
    m, sd = (mean / 255).tolist(), (var.sqrt() / 255).tolist()
    return (m[0], m[1], m[2]), (sd[0], sd[1], sd[2])


def stratified_sample(y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of `k` elements drawn so every class keeps its share (to +-1 image).

    A random permutation is sorted (stably) by each element's rank within its class divided by
    the class size, so the first `k` take classes in proportion; classes are never "the
    first k" of an ordered dataset.
    """
    n = len(y)
    if not 0 <= k <= n:
        raise ValueError(f"cannot take {k} of {n} samples")
    perm = torch.randperm(n, generator=generator)
    yp = y.cpu()[perm]
    # rank of each permuted element within its class: order by class, stable keeps perm order
    order = torch.sort(yp, stable=True).indices
    counts = torch.bincount(yp)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts[yp[order]]
    key = (rank.double() + 0.5) / counts[yp].double()
    chosen = perm[torch.sort(key, stable=True).indices[:k]]
    return torch.sort(chosen).values


def train_val_split(
    n: int, val_size: int, seed: int, *, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx): sorted int64 index tensors, disjoint, covering `range(n)`.

    Seeded with `torch.Generator().manual_seed(seed)`; `val_size=0` gives an empty val.
    With `labels`, the validation set is stratified (each class keeps its share).
    """
    if not 0 <= val_size <= n:
        raise ValueError(f"val_size must be in [0, {n}], got {val_size}")
    g = torch.Generator().manual_seed(seed)
    if labels is not None:
        if len(labels) != n:
            raise ValueError(f"labels has {len(labels)} entries, expected {n}")
        val = stratified_sample(labels, val_size, g)
    else:
        val = torch.sort(torch.randperm(n, generator=g)[:val_size]).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).flatten(), val


@dataclass(eq=False)
class ImageDataset:
    """A whole dataset in memory: uint8 (N, 3, H, W) contiguous CPU images, int64 labels."""

    name: str  # "cifar10", "cifar100", or "imagefolder:<path>"
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str  # where it was read from (file path or folder)
    _stats: Stats | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(
                    f"x_{split} must be uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(
                    f"y_{split} must be int64 ({len(x)},), got {y.dtype} {tuple(y.shape)}"
                )
            if len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(self.classes):
                raise ValueError(f"y_{split} has labels outside [0, {len(self.classes)})")
        if self.x_train.shape[1:] != self.x_test.shape[1:] and len(self.x_test):
            raise ValueError("train and test images differ in shape")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        """Height of the images (they are square)."""
        return int(self.x_train.shape[2])

    def mean_std(self) -> Stats:
        """Per-channel mean and std in [0, 1] over `x_train` (computed once, then cached)."""
        if self._stats is None:
            self._stats = channel_mean_std(self.x_train)
        return self._stats

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, seed: int = 0
    ) -> ImageDataset:
        """A seeded, stratified subset (None keeps a split whole); for quick runs and tests."""
        g = torch.Generator().manual_seed(seed)
        parts = {}
        for split, k in (("train", n_train), ("test", n_test)):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if k is None:
                parts[split] = (x, y)
            else:
                idx = stratified_sample(y, k, g)
                parts[split] = (x[idx].contiguous(), y[idx].contiguous())
        return replace(
            self,
            x_train=parts["train"][0],
            y_train=parts["train"][1],
            x_test=parts["test"][0],
            y_test=parts["test"][1],
            source=f"{self.source} (subset: {n_train} train, {n_test} test, seed {seed})",
        )

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes}, source={self.source!r})"
        )


def _from_raw(name: str, raw: RawSplits) -> ImageDataset:
    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype).contiguous()

    return ImageDataset(
        name=name,
        x_train=t(raw.x_train, torch.uint8),
        y_train=t(raw.y_train, torch.int64),
        x_test=t(raw.x_test, torch.uint8),
        y_test=t(raw.y_test, torch.int64),
        classes=list(raw.classes),
        source=raw.source,
    )


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: int = 32,
    label_kind: str = "fine",
    show_progress: bool = True,
) -> ImageDataset:
    """Load a dataset by name: "cifar10", "cifar100" or "imagefolder" / "imagefolder:<path>".

    CIFAR: `data_dir` (else `$CNNBENCH_DATA`, else the user cache) is searched as described in
    `cnnbench.data.sources`; `label_kind="coarse"` gives CIFAR-100's 20 superclasses.
    Image folder: the folder is `data_dir` or the part after "imagefolder:"; images are
    resized to `image_size`. Every user-fixable problem raises `DataError`.
    """
    key = name.strip()
    lower = key.lower()
    if lower in ("cifar10", "cifar100"):
        if image_size != 32:
            raise DataError(f"{lower} images are 32x32; image_size={image_size} is not supported")
        raw = load_cifar(
            lower,
            data_dir=data_dir,
            download=download,
            label_kind=label_kind,
            show_progress=show_progress,
        )
        return _from_raw(lower, raw)
    if lower == "imagefolder" or lower.startswith("imagefolder:"):
        if label_kind != "fine":
            raise DataError("label_kind='coarse' is only for cifar100")
        folder = key.split(":", 1)[1] if ":" in key else data_dir
        if folder is None or str(folder) == "":
            raise DataError(
                "imagefolder needs a folder: pass --data-dir DIR (data_dir=DIR) or name it "
                "imagefolder:DIR"
            )
        path = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        raw = read_imagefolder(path, image_size=image_size, show_progress=show_progress)
        return _from_raw(f"imagefolder:{path}", raw)
    raise DataError(
        f"unknown dataset {name!r}; choose one of {', '.join(_DATASETS)} (or imagefolder:<path>)"
    )
