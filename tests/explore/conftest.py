"""Fixtures of the explore tests: small synthetic datasets with known structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnbench.data import ImageDataset


def clustered_images(
    per_class: int, num_classes: int, seed: int, size: int = 8, noise: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 3, size, size) images: a random prototype per class plus small noise, so
    classes are well separated in pixel space; labels sorted by class."""
    rng = np.random.default_rng(1234)  # the same prototypes for every split
    protos = rng.integers(40, 216, (num_classes, 3, size, size))
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes), per_class)
    x = protos[y] + rng.integers(-noise, noise + 1, (len(y), 3, size, size))
    return np.clip(x, 0, 255).astype(np.uint8), y


def synthetic_dataset(
    per_train: int = 30, per_test: int = 10, num_classes: int = 4
) -> ImageDataset:
    xtr, ytr = clustered_images(per_train, num_classes, seed=1, size=16)
    xte, yte = clustered_images(per_test, num_classes, seed=2, size=16)
    xtr[5] = xtr[3]  # a duplicate within train
    xte[7] = xtr[40]  # a class-1 train image also in test, labelled class 0: a conflict
    return ImageDataset(
        name="synthetic",
        x_train=torch.from_numpy(xtr),
        y_train=torch.from_numpy(ytr).long(),
        x_test=torch.from_numpy(xte),
        y_test=torch.from_numpy(yte).long(),
        classes=[f"class_{c}" for c in range(num_classes)],
        source="synthetic",
    )


@pytest.fixture
def clustered():
    """`clustered_images(per_class, num_classes, seed, size=8, noise=12) -> (x, y)`."""
    return clustered_images


@pytest.fixture
def small_dataset() -> ImageDataset:
    """4 well-separated classes of 16x16 images, 120 train / 40 test, 2 planted duplicates."""
    return synthetic_dataset()
