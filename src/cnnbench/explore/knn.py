"""The nearest-neighbour floor: 1-NN (L2) on raw pixels, exact, in chunks with torch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["knn1_accuracy", "knn1_predict"]

_CANDIDATES = 4  # float32 nearest candidates re-ranked exactly per test image


def _as_rows(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.reshape(len(t), -1)


def knn1_predict(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor,
    *,
    chunk_elems: int = 25_000_000,
    on_chunk: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Label of each test row's nearest train row (squared L2; ties: the lowest train index).

    Distances come from one float32 matmul per chunk of test rows (`chunk_elems` bounds the
    chunk's distance matrix, 100 MB by default); the `_CANDIDATES` closest are then re-ranked
    with exact int64 (uint8 input) or float64 distances, so rounding cannot pick a wrong
    neighbour. `on_chunk(n)` is called after each chunk of `n` test rows (progress bars).
    """
    tr, te = _as_rows(x_train), _as_rows(x_test)
    ytr = torch.as_tensor(y_train).long()
    if len(tr) == 0 or tr.shape[1] != te.shape[1] or len(ytr) != len(tr):
        raise ValueError(
            f"bad shapes: train {tuple(tr.shape)}, labels {len(ytr)}, test {tuple(te.shape)}"
        )
    exact_dtype = torch.int64 if tr.dtype == torch.uint8 else torch.float64
    # centring keeps float32 dot products small, hence precise
    centre = tr.double().mean(0)
    trf = (tr.double() - centre).float()
    tr_sq = (trf * trf).sum(1)
    k = min(_CANDIDATES, len(tr))
    rows_per_chunk = max(1, chunk_elems // len(tr))
    pred = torch.empty(len(te), dtype=torch.long)
    for start in range(0, len(te), rows_per_chunk):
        q = te[start : start + rows_per_chunk]
        qf = (q.double() - centre).float()
        # ||q - t||^2 = ||q||^2 - 2 q.t + ||t||^2; ||q||^2 is constant per row, left out
        approx = tr_sq[None, :] - 2 * (qf @ trf.T)
        # candidates in index order, then a stable sort by exact distance: ties keep the lower
        cand = approx.topk(k, dim=1, largest=False).indices.sort(1).values  # (B, k)
        diff = q[:, None, :].to(exact_dtype) - tr[cand].to(exact_dtype)
        exact = (diff * diff).sum(2)  # (B, k)
        first = exact.sort(dim=1, stable=True).indices[:, :1]
        pred[start : start + len(q)] = ytr[cand.gather(1, first).squeeze(1)]
        if on_chunk is not None:
            on_chunk(len(q))
    return pred.numpy()


def knn1_accuracy(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor,
    y_test: np.ndarray | torch.Tensor,
    **kwargs,
) -> float:
    """Fraction of test rows whose nearest train row (L2) has their label; see `knn1_predict`."""
    pred = knn1_predict(x_train, y_train, x_test, **kwargs)
    return float((pred == torch.as_tensor(y_test).numpy()).mean())
