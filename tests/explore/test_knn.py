from __future__ import annotations

import numpy as np
import torch

from cnnbench.explore import knn1_accuracy, knn1_predict


def test_separable_set_is_classified_perfectly(clustered):
    xtr, ytr = clustered(20, 5, seed=1)
    xte, yte = clustered(10, 5, seed=2)
    assert knn1_accuracy(xtr, ytr, xte, yte, chunk_elems=100) == 1.0  # many small chunks


def test_matches_brute_force_and_breaks_ties_by_lowest_index():
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (200, 3, 4, 4), dtype=np.uint8)
    ytr = rng.integers(0, 7, 200)
    xte = rng.integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    xtr[150] = xtr[20]  # an exact tie: the lower index (20) wins
    ytr[20], ytr[150] = 1, 2
    xte[0] = xtr[150]
    d = ((xte.reshape(50, 1, -1).astype(np.int64) - xtr.reshape(1, 200, -1)) ** 2).sum(-1)
    pred = knn1_predict(torch.from_numpy(xtr), ytr, xte, chunk_elems=1000)
    assert (pred == ytr[d.argmin(1)]).all()  # argmin returns the first minimum
    assert pred[0] == 1


def test_float_rows_are_accepted():
    xtr = np.array([[0.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    assert knn1_predict(xtr, [3, 4], np.array([[9.0, 9.5], [1.0, -1.0]])).tolist() == [4, 3]
