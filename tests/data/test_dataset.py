"""ImageDataset, image folders, the train/val split and subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnbench.data import (
    DataError,
    DataWarning,
    ImageDataset,
    list_datasets,
    load_dataset,
    stratified_sample,
    train_val_split,
)


def _save(path: Path, size: tuple[int, int], mode: str, fmt: str, seed: int) -> None:
    """One random image of `size` (w, h) in `mode`, saved as `fmt`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    if mode == "P":
        im = im.quantize(16)
    elif mode != "RGB":
        im = im.convert(mode)
    im.save(path, format=fmt)


# modes and sizes differ on purpose: every image must come out RGB, image_size x image_size
_VARIANTS = [
    ((40, 30), "RGB", "PNG", ".png"),
    ((20, 20), "L", "JPEG", ".jpg"),
    ((64, 48), "RGBA", "PNG", ".png"),
    ((17, 33), "P", "PNG", ".png"),
    ((32, 32), "RGB", "JPEG", ".jpeg"),
]


def _class_folder(folder: Path, n: int, seed: int) -> None:
    for i in range(n):
        size, mode, fmt, ext = _VARIANTS[(i + seed) % len(_VARIANTS)]
        _save(folder / f"img{i}{ext}", size, mode, fmt, seed * 100 + i)


def test_list_datasets() -> None:
    assert list_datasets() == ["cifar10", "cifar100", "imagefolder"]


def test_imagefolder_train_test_layout(tmp_path: Path) -> None:
    for cls, n in (("cat", 6), ("dog", 4)):
        _class_folder(tmp_path / "train" / cls, n, seed=len(cls) + n)
    _class_folder(tmp_path / "val" / "cat", 2, seed=7)
    _class_folder(tmp_path / "val" / "dog", 3, seed=8)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image, ignored")

    ds = load_dataset(f"imagefolder:{tmp_path}", image_size=24, show_progress=False)
    assert ds.name == f"imagefolder:{tmp_path}"
    assert ds.classes == ["cat", "dog"]
    assert ds.x_train.shape == (10, 3, 24, 24) and ds.x_test.shape == (5, 3, 24, 24)
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.is_contiguous()
    assert ds.y_train.tolist() == [0] * 6 + [1] * 4 and ds.y_test.tolist() == [0, 0, 1, 1, 1]
    assert "val/" in ds.source
    assert ds.image_size == 24


def test_imagefolder_flat_layout_carves_a_stratified_test_split(tmp_path: Path) -> None:
    _class_folder(tmp_path / "a", 10, seed=1)
    _class_folder(tmp_path / "b", 5, seed=2)
    ds = load_dataset("imagefolder", data_dir=tmp_path, show_progress=False)
    assert ds.x_train.shape[1:] == (3, 32, 32)
    assert torch.bincount(ds.y_test).tolist() == [2, 1]  # 20 % of each class
    assert torch.bincount(ds.y_train).tolist() == [8, 4]
    assert "stratified 20%" in ds.source and "seed 0" in ds.source
    again = load_dataset("imagefolder", data_dir=tmp_path, show_progress=False)
    assert torch.equal(again.x_test, ds.x_test)  # seeded
    # train and test are disjoint images
    flat = torch.cat([ds.x_train, ds.x_test]).flatten(1)
    assert len(torch.unique(flat, dim=0)) == 15


def test_imagefolder_transparency_and_grey(tmp_path: Path) -> None:
    for i in range(2):  # fully transparent red flattens onto white; grey stays grey
        _save_solid(tmp_path / "a" / f"t{i}.png", Image.new("RGBA", (8, 8), (255, 0, 0, 0)))
        _save_solid(tmp_path / "b" / f"g{i}.png", Image.new("L", (9, 5), 77))
    ds = load_dataset("imagefolder", data_dir=tmp_path, image_size=8, show_progress=False)
    images = torch.cat([ds.x_train, ds.x_test])
    labels = torch.cat([ds.y_train, ds.y_test])
    assert (images[labels == 0] == 255).all()
    assert (images[labels == 1] == 77).all()


def _save_solid(path: Path, im: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def test_imagefolder_skips_corrupt_files_with_a_warning(tmp_path: Path) -> None:
    _class_folder(tmp_path / "x", 3, seed=1)
    _class_folder(tmp_path / "y", 3, seed=2)
    (tmp_path / "x" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "y" / "empty.jpg").write_bytes(b"")
    with pytest.warns(DataWarning, match="skipped 2 unreadable"):
        ds = load_dataset("imagefolder", data_dir=tmp_path, show_progress=False)
    assert len(ds.y_train) + len(ds.y_test) == 6


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class folders") as err:
        load_dataset("imagefolder", data_dir=tmp_path)
    assert str(tmp_path) in str(err.value)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_dataset("imagefolder", data_dir=tmp_path)
    (tmp_path / "empty_class" / "bad.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_dataset("imagefolder", data_dir=tmp_path, show_progress=False)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="needs a folder"):
        load_dataset("imagefolder")


def test_imagefolder_test_class_unknown_to_train(tmp_path: Path) -> None:
    _class_folder(tmp_path / "train" / "a", 2, seed=1)
    _class_folder(tmp_path / "test" / "b", 2, seed=2)
    with pytest.raises(DataError, match="'b'"):
        load_dataset("imagefolder", data_dir=tmp_path, show_progress=False)


# --------------------------------------------------------------------------- split, subset


@pytest.mark.parametrize(("n", "val_size"), [(100, 10), (50_000, 5_000), (7, 0), (5, 5)])
def test_train_val_split_is_seeded_disjoint_and_covers(n: int, val_size: int) -> None:
    tr, va = train_val_split(n, val_size, seed=3)
    assert tr.dtype == va.dtype == torch.int64
    assert len(va) == val_size and len(tr) == n - val_size
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(n))
    tr2, va2 = train_val_split(n, val_size, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    if 0 < val_size < n and n > 20:
        assert not torch.equal(va, train_val_split(n, val_size, seed=4)[1])
        assert not torch.equal(va, torch.arange(val_size))  # never "the first k"


def test_train_val_split_stratified_and_bad_sizes() -> None:
    labels = torch.arange(1000) // 100  # ordered by class, as CIFAR is
    _, va = train_val_split(1000, 100, seed=0, labels=labels)
    assert torch.bincount(labels[va]).tolist() == [10] * 10
    with pytest.raises(ValueError):
        train_val_split(10, 11, seed=0)
    with pytest.raises(ValueError):
        train_val_split(10, -1, seed=0)


def test_stratified_sample_keeps_shares() -> None:
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_sample(y, 10, torch.Generator().manual_seed(0))
    assert torch.bincount(y[idx]).tolist() == [6, 3, 1]
    assert torch.equal(idx, torch.unique(idx))  # sorted, no repeats


def _tiny_dataset() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.arange(40) // 10
    return ImageDataset("tiny", x, y, x[:20].clone(), y[:20].clone(), list("abcd"), "memory")


def test_subset_is_seeded_and_stratified() -> None:
    ds = _tiny_dataset()
    sub = ds.subset(n_train=8, seed=1)
    assert torch.bincount(sub.y_train).tolist() == [2, 2, 2, 2]
    assert sub.x_test is ds.x_test  # None keeps the split whole
    assert torch.equal(ds.subset(8, 4, seed=1).x_train, sub.x_train)
    assert not torch.equal(ds.subset(8, seed=2).x_train, sub.x_train)
    assert "subset" in sub.source and sub.classes == ds.classes


def test_subset_of_cifar10(cifar10: ImageDataset) -> None:
    sub = cifar10.subset(n_train=1000, n_test=200, seed=0)
    assert torch.bincount(sub.y_train).tolist() == [100] * 10
    assert torch.bincount(sub.y_test).tolist() == [20] * 10
    assert sub.x_train.is_contiguous()


def test_mean_std_matches_direct_computation() -> None:
    ds = _tiny_dataset()
    mean, std = ds.mean_std()
    x = ds.x_train.double() / 255
    assert np.allclose(mean, x.mean(dim=(0, 2, 3)).tolist(), atol=1e-12)
    assert np.allclose(std, x.std(dim=(0, 2, 3), correction=0).tolist(), atol=1e-12)


def test_image_dataset_validates() -> None:
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(
            "bad",
            x.float(),
            torch.zeros(2, dtype=torch.int64),
            x,
            torch.zeros(2, dtype=torch.int64),
            ["a"],
            "",
        )
    with pytest.raises(ValueError, match="outside"):
        ImageDataset(
            "bad", x, torch.tensor([0, 3]), x, torch.zeros(2, dtype=torch.int64), ["a"], ""
        )
    assert "ImageDataset(name='ok'" in repr(
        ImageDataset(
            "ok",
            x,
            torch.zeros(2, dtype=torch.int64),
            x,
            torch.zeros(2, dtype=torch.int64),
            ["a"],
            "",
        )
    )
