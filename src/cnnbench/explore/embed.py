"""Embeddings of images: seeded class-balanced samples, PCA, t-SNE, a model's features.

Images enter as uint8 (N, C, H, W) or as float (N, D) rows; everything else is numpy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "PCAResult",
    "balanced_sample",
    "components_for",
    "flatten_pixels",
    "model_features",
    "pca",
    "tsne_2d",
]


def balanced_sample(y: np.ndarray | torch.Tensor, k: int, seed: int) -> np.ndarray:
    """Sorted indices of `k` elements, as class-balanced as the labels allow, seeded.

    Classes take turns (one random image of each class per round); a class that runs out
    drops out of the rotation, so an imbalanced dataset still yields `k` images.
    """
    y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    n = len(y)
    if not 0 <= k <= n:
        raise ValueError(f"cannot take {k} of {n} samples")
    perm = np.random.default_rng(seed).permutation(n)
    yp = y[perm].astype(np.int64)
    order = np.argsort(yp, kind="stable")
    counts = np.bincount(yp)
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[yp[order]]
    # round r of the rotation holds every class's r-th (random) image, classes in label order
    chosen = perm[np.lexsort((yp, rank))[:k]]
    return np.sort(chosen)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded: the LAPACK eigenvalue solver gains nothing from a second
    thread and loses badly on a shared CPU (3,072 x 3,072: 4.5 s on one thread against 12 s
    on two, on a busy 2-core machine; 768 x 768: 0.13 s against 6.5 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def flatten_pixels(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """float32 (N, C*H*W) in [0, 1] from uint8 images; float (N, D) rows pass through."""
    a = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.dtype == np.uint8:
        return a.reshape(len(a), -1).astype(np.float32) / 255.0
    return a.reshape(len(a), -1).astype(np.float32, copy=False)


@dataclass
class PCAResult:
    """The variance spectrum of a sample and its first components (see `pca`)."""

    explained_variance_ratio: np.ndarray  # (D',) every component, descending, sums to 1
    projection: np.ndarray  # (N, n_components) the sample in the top components
    components: np.ndarray  # (n_components, D)
    mean: np.ndarray  # (D,)
    n_samples: int

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """Project other rows (same layout as the fitted ones) onto the top components."""
        return (flatten_pixels(rows) - self.mean) @ self.components.T


def pca(x: np.ndarray | torch.Tensor, n_components: int = 50, seed: int = 0) -> PCAResult:
    """PCA of image rows: the full explained-variance spectrum plus the top components.

    The spectrum (needed for the 90/95/99 % thresholds, which on CIFAR lie in the hundreds of
    components) is the eigenvalues of the D x D covariance, without eigenvectors: on 3,072
    pixels that costs a fraction of a full decomposition. The top `n_components` (for plots
    and t-SNE) come from scikit-learn's randomized PCA, which agrees with the spectrum on
    those components (pinned by a test).
    """
    from sklearn.decomposition import PCA

    rows = flatten_pixels(x)
    n, d = rows.shape
    if n < 2:
        raise ValueError("PCA needs at least 2 samples")
    k = min(n_components, n, d)
    mean = rows.mean(0, dtype=np.float64).astype(np.float32)
    centred = torch.from_numpy(rows - mean)
    # float32 is plenty for a variance curve, and eigvalsh is much slower in float64
    cov = (centred.T @ centred) / (n - 1)
    with _one_torch_thread():
        eig = torch.linalg.eigvalsh(cov).flip(0).clamp_min(0).double().numpy()
    eig = eig[: min(n - 1, d)]  # the rank is at most n - 1
    ratio = eig / eig.sum()
    model = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(rows)
    return PCAResult(
        explained_variance_ratio=ratio,
        projection=model.transform(rows).astype(np.float32),
        components=model.components_.astype(np.float32),
        mean=model.mean_.astype(np.float32),
        n_samples=n,
    )


def components_for(ratio: np.ndarray, levels: Sequence[float] = (0.90, 0.95, 0.99)) -> dict:
    """The fewest leading components whose explained variance reaches each level.

    Keys are the levels as percent strings ("90", "95", "99").
    """
    cum = np.cumsum(ratio)
    out = {}
    for level in levels:
        # float error can leave the total a hair under 1: the last component then reaches it
        k = int(np.searchsorted(cum, level - 1e-9) + 1)
        out[f"{level * 100:g}"] = min(k, len(ratio))
    return out


def tsne_2d(
    rows: np.ndarray, seed: int = 0, pca_dims: int = 50, perplexity: float = 30.0
) -> np.ndarray:
    """float32 (N, 2) t-SNE embedding (scikit-learn, Barnes-Hut, PCA init), seeded.

    Rows with more than `pca_dims` columns are first reduced by PCA to `pca_dims` (standard
    practice: it removes noise and makes the neighbour search cheap). The perplexity is capped
    at (N - 1) / 3 so small samples work.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    rows = flatten_pixels(rows)
    n = len(rows)
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 samples, got {n}")
    if rows.shape[1] > pca_dims and n > pca_dims:
        rows = PCA(n_components=pca_dims, svd_solver="randomized", random_state=seed).fit_transform(
            rows
        )
    tsne = TSNE(
        n_components=2,
        perplexity=min(perplexity, (n - 1) / 3),
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    # One OpenMP thread: the Barnes-Hut loop meets a barrier many times per iteration, and on
    # a shared CPU a descheduled thread leaves the other spinning (measured 2 s with one
    # thread against 54 s with two for 45 points on a busy 2-core machine).
    with threadpool_limits(limits=1, user_api="openmp"):
        emb = tsne.fit_transform(rows)
    return emb.astype(np.float32)


def model_features(
    model: nn.Module,
    x: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """float32 (N, num_features): `model.forward_features` of uint8 images, normalised with
    the run's `mean` / `std`, in eval mode under `inference_mode`, in batches."""
    from cnnbench.data import normalize

    dev = torch.device(device)
    was_training = model.training
    model.eval().to(dev)
    out = []
    try:
        with torch.inference_mode():
            for batch in torch.as_tensor(x).split(batch_size):
                f = model.forward_features(normalize(batch.to(dev), mean, std))
                out.append(f.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()
