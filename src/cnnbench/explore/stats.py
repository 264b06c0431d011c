"""Summary statistics of uint8 image arrays: class counts, pixel histograms, exact duplicates.

Every function takes plain arrays (numpy or torch, uint8 (N, C, H, W) images, integer labels),
so tests can feed synthetic data; `cnnbench.explore.driver` applies them to a dataset.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import numpy as np
import torch

__all__ = [
    "class_counts",
    "find_duplicates",
    "mean_std_from_histogram",
    "pixel_histogram",
]

ArrayLike = np.ndarray | torch.Tensor


def _np(a: ArrayLike) -> np.ndarray:
    return a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def class_counts(y: ArrayLike, num_classes: int) -> list[int]:
    """Images per class, a list of `num_classes` ints (classes without images count 0)."""
    return np.bincount(_np(y).astype(np.int64), minlength=num_classes).tolist()


def pixel_histogram(x: ArrayLike, chunk: int = 2048) -> np.ndarray:
    """int64 (C, 256): how many pixels of each channel take each uint8 value.

    Accumulated over chunks of `chunk` images, so memory stays at a few tens of MB.
    """
    t = torch.as_tensor(x)
    if t.dtype != torch.uint8 or t.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W), got {t.dtype} {tuple(t.shape)}")
    channels = t.shape[1]
    hist = torch.zeros(channels * 256, dtype=torch.int64)
    offset = (torch.arange(channels, dtype=torch.int32) * 256).view(1, -1, 1)
    for c in t.split(chunk):
        bins = c.reshape(len(c), channels, -1).to(torch.int32) + offset
        hist += torch.bincount(bins.flatten(), minlength=channels * 256)
    return hist.view(channels, 256).numpy()


def mean_std_from_histogram(hist: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std in [0, 1] from a (C, 256) histogram (exact, float64)."""
    h = np.asarray(hist, dtype=np.float64)
    v = np.arange(256, dtype=np.float64)
    n = h.sum(1)
    if np.any(n == 0):
        raise ValueError("no pixels to compute statistics on")
    mean = (h * v).sum(1) / n
    var = np.clip((h * (v - mean[:, None]) ** 2).sum(1) / n, 0, None)
    return (mean / 255).tolist(), (np.sqrt(var) / 255).tolist()


def _digests(x: np.ndarray) -> list[bytes]:
    rows = x.reshape(len(x), -1)
    return [hashlib.blake2b(r, digest_size=16).digest() for r in rows]


def find_duplicates(
    x_train: ArrayLike,
    x_test: ArrayLike,
    y_train: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
) -> dict[str, Any]:
    """Exact-duplicate images (identical uint8 bytes) within and across the two splits.

    Each image's bytes are hashed (BLAKE2b, 128 bit); images sharing a digest are compared
    byte for byte, so a reported group is always exact. A *group* is a set of two or more
    identical images. Returns:

    - ``within_train`` / ``within_test``: ``{"groups", "images", "redundant"}`` over the
      groups lying in one split: groups, images in them, and images beyond the first of each
      group (what removing duplicates would drop);
    - ``across``: ``{"groups", "train_images", "test_images"}`` over the groups with images
      in both splits (a test image also present in train leaks);
    - ``label_conflicts``: groups whose images carry different labels (labels given);
    - ``groups``: every group as ``{"train": [idx], "test": [idx], "labels": [...]}``,
      train indices first, labels in the same order.
    """
    xtr, xte = np.ascontiguousarray(_np(x_train)), np.ascontiguousarray(_np(x_test))
    ytr = None if y_train is None else _np(y_train)
    yte = None if y_test is None else _np(y_test)
    groups: list[dict[str, Any]] = []
    for exact in _identical_sets(xtr, xte):
        train = sorted(i for s, i in exact if s == 0)
        test = sorted(i for s, i in exact if s == 1)
        group: dict[str, Any] = {"train": train, "test": test}
        if ytr is not None and yte is not None:
            group["labels"] = [int(ytr[i]) for i in train] + [int(yte[i]) for i in test]
        groups.append(group)
    groups.sort(key=lambda g: (not g["train"], g["train"][:1], g["test"][:1]))

    def within(key: str, other: str) -> dict[str, int]:
        gs = [g for g in groups if g[key] and not g[other]]
        images = sum(len(g[key]) for g in gs)
        return {"groups": len(gs), "images": images, "redundant": images - len(gs)}

    mixed = [g for g in groups if g["train"] and g["test"]]
    return {
        "within_train": within("train", "test"),
        "within_test": within("test", "train"),
        "across": {
            "groups": len(mixed),
            "train_images": sum(len(g["train"]) for g in mixed),
            "test_images": sum(len(g["test"]) for g in mixed),
        },
        "label_conflicts": sum(1 for g in groups if len(set(g.get("labels", []))) > 1),
        "groups": groups,
    }


def _identical_sets(xtr: np.ndarray, xte: np.ndarray) -> list[list[tuple[int, int]]]:
    """Sets of two or more byte-identical images, as (split, index) pairs (split 0: train)."""
    arrays = (xtr, xte)
    buckets: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for split, x in enumerate(arrays):
        for i, d in enumerate(_digests(x)):
            buckets[d].append((split, i))
    sets = []
    for members in buckets.values():
        if len(members) < 2:
            continue
        # a digest collision is astronomically unlikely, but exactness is cheap to check
        by_bytes: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        for s, i in members:
            by_bytes[arrays[s][i].tobytes()].append((s, i))
        sets += [exact for exact in by_bytes.values() if len(exact) >= 2]
    return sets
