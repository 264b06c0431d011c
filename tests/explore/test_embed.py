from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnbench.explore import balanced_sample, components_for, model_features, pca, tsne_2d


def test_balanced_sample_is_balanced_seeded_and_sorted():
    y = np.repeat(np.arange(5), 100)
    idx = balanced_sample(y, 50, seed=3)
    assert np.bincount(y[idx]).tolist() == [10] * 5
    assert (np.diff(idx) > 0).all()
    assert (idx == balanced_sample(torch.from_numpy(y), 50, seed=3)).all()
    assert not (idx == balanced_sample(y, 50, seed=4)).all()


def test_balanced_sample_with_imbalanced_classes_takes_all_of_a_small_class():
    y = np.array([0] * 3 + [1] * 100 + [2] * 100)
    idx = balanced_sample(y, 43, seed=0)
    assert np.bincount(y[idx]).tolist() == [3, 20, 20]
    with pytest.raises(ValueError, match="cannot take"):
        balanced_sample(y, 204, seed=0)


def test_pca_recovers_a_three_dimensional_subspace():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(192, 3)))[0].T  # 3 orthonormal directions
    coords = rng.normal(size=(400, 3)) * np.array([5.0, 3.0, 2.0])
    rows = coords @ basis + 0.5 + rng.normal(scale=1e-3, size=(400, 192))
    res = pca(rows.astype(np.float32), n_components=10, seed=0)
    assert res.explained_variance_ratio[:3].sum() > 0.99
    assert components_for(res.explained_variance_ratio) == {"90": 3, "95": 3, "99": 3}
    # the randomized top components agree with the full spectrum ...
    var = res.projection.var(0, ddof=1)
    total = rows.var(0, ddof=1).sum()
    assert np.allclose(var[:3] / total, res.explained_variance_ratio[:3], rtol=1e-3)
    # ... and span the planted subspace
    assert np.allclose(np.linalg.svd(res.components[:3] @ basis.T)[1], 1, atol=1e-3)
    assert np.allclose(res.transform(rows)[:, :3], res.projection[:, :3], atol=1e-3)


def test_components_for_levels():
    ratio = np.array([0.5, 0.3, 0.15, 0.04, 0.01])
    assert components_for(ratio) == {"90": 3, "95": 3, "99": 4}
    assert components_for(ratio, (0.5, 1.0)) == {"50": 1, "100": 5}


def test_tsne_separates_separable_clusters(clustered):
    x, y = clustered(15, 3, seed=0)
    emb = tsne_2d(x, seed=0)
    assert emb.shape == (45, 2) and np.isfinite(emb).all()
    # every point's nearest neighbour in the embedding is of its own class
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1) + np.eye(45) * 1e9
    assert (y[d.argmin(1)] == y).mean() > 0.95
    assert np.allclose(emb, tsne_2d(x, seed=0))


def test_tsne_needs_a_few_samples():
    with pytest.raises(ValueError, match="at least 4"):
        tsne_2d(np.zeros((3, 5), dtype=np.float32))


def test_model_features_shape_and_mode():
    from cnnbench.models import create_model

    model = create_model("lenet5", num_classes=4).train()
    x = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    f = model_features(model, x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), batch_size=3)
    assert f.shape == (7, model.num_features) and f.dtype == np.float32
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        from cnnbench.data import normalize

        want = model.forward_features(normalize(x, (0.5,) * 3, (0.25,) * 3))
    assert np.allclose(f, want.numpy(), atol=1e-5)
