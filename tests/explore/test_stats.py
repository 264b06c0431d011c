from __future__ import annotations

import numpy as np
import torch

from cnnbench.explore import (
    class_counts,
    find_duplicates,
    mean_std_from_histogram,
    pixel_histogram,
)

# shared/data/README.md, "Figures to check a reader against"
PUBLISHED = {
    ("cifar10", "train"): ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ("cifar10", "test"): ((0.4942, 0.4851, 0.4504), (0.2466, 0.2429, 0.2616)),
    ("cifar100", "train"): ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    ("cifar100", "test"): ((0.5088, 0.4874, 0.4419), (0.2683, 0.2574, 0.2771)),
}


def _check_published(ds) -> None:
    for split, per_class in (("train", 50000), ("test", 10000)):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert class_counts(y, ds.num_classes) == [per_class // ds.num_classes] * ds.num_classes
        mean, std = mean_std_from_histogram(pixel_histogram(x))
        want_mean, want_std = PUBLISHED[(ds.name, split)]
        assert [round(v, 4) for v in mean] == list(want_mean)
        assert [round(v, 4) for v in std] == list(want_std)


def test_cifar10_statistics_equal_the_published_figures(cifar10):
    _check_published(cifar10)
    mean, std = mean_std_from_histogram(pixel_histogram(cifar10.x_train))
    assert np.allclose(mean, cifar10.mean_std()[0]) and np.allclose(std, cifar10.mean_std()[1])


def test_cifar10_has_no_exact_duplicates(cifar10):
    d = find_duplicates(cifar10.x_train, cifar10.x_test)
    assert d["groups"] == []


def test_cifar100_statistics_and_duplicates_equal_the_published_figures(data_dir):
    from cnnbench.data import load_dataset

    ds = load_dataset("cifar100", data_dir=data_dir, show_progress=False)
    _check_published(ds)
    d = find_duplicates(ds.x_train, ds.x_test, ds.y_train, ds.y_test)
    # README: 14 in train, 2 in test, 10 shared between train and test (all pairs)
    assert d["within_train"] == {"groups": 14, "images": 28, "redundant": 14}
    assert d["within_test"] == {"groups": 2, "images": 4, "redundant": 2}
    assert d["across"] == {"groups": 10, "train_images": 10, "test_images": 10}


def test_histogram_and_moments_match_numpy():
    x = np.random.default_rng(0).integers(0, 256, (37, 3, 5, 7), dtype=np.uint8)
    h = pixel_histogram(torch.from_numpy(x), chunk=8)  # several chunks
    for c in range(3):
        assert (h[c] == np.bincount(x[:, c].ravel(), minlength=256)).all()
    mean, std = mean_std_from_histogram(h)
    f = x.astype(np.float64) / 255
    assert np.allclose(mean, f.mean((0, 2, 3))) and np.allclose(std, f.std((0, 2, 3)))


def test_class_counts_include_empty_classes():
    assert class_counts(np.array([0, 2, 2]), 4) == [1, 0, 2, 0]


def test_planted_duplicates_are_found():
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    xte = rng.integers(0, 256, (20, 3, 4, 4), dtype=np.uint8)
    ytr, yte = np.arange(50) % 5, np.arange(20) % 5
    xtr[10] = xtr[3]  # within train: a pair ...
    xtr[20] = xtr[30] = xtr[7]  # ... and a triple
    xte[4] = xte[15]  # within test
    xte[9] = xtr[44]  # across; labels 4 (train) and 4 (test) agree
    xte[11] = xtr[1]  # across; labels 1 and 1
    xtr[2, 0, 0, 0] ^= 1  # near-duplicate of nothing: one flipped bit is not a duplicate
    d = find_duplicates(xtr, xte, ytr, yte)
    assert d["within_train"] == {"groups": 2, "images": 5, "redundant": 3}
    assert d["within_test"] == {"groups": 1, "images": 2, "redundant": 1}
    assert d["across"] == {"groups": 2, "train_images": 2, "test_images": 2}
    groups = {(tuple(g["train"]), tuple(g["test"])) for g in d["groups"]}
    assert groups == {((3, 10), ()), ((7, 20, 30), ()), ((), (4, 15)), ((44,), (9,)), ((1,), (11,))}
    # labels: (3, 10) -> 3, 0 and (7, 20, 30) -> 2, 0, 0 conflict; (4, 15) -> 4, 0 too
    assert d["label_conflicts"] == 3


def test_no_duplicates_in_distinct_images():
    x = np.arange(64, dtype=np.uint8).reshape(64, 1, 1, 1).repeat(3, 1)
    d = find_duplicates(x[:40], x[40:])
    assert d["groups"] == [] and d["across"]["groups"] == 0
