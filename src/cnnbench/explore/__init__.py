"""Explore a dataset before training: statistics, sample grids, PCA, t-SNE, a 1-NN floor.

    from cnnbench.explore import explore_dataset
    result = explore_dataset("cifar10", out_dir="runs/my-study/explore")

`explore_dataset` loads a dataset and hands it to `explore`, which writes `explore.json`,
`explore.md` and the figures (see `cnnbench.explore.driver`). The statistics are functions of
plain arrays: `stats` (counts, histograms, exact duplicates), `embed` (balanced samples, PCA,
t-SNE, model features) and `knn` (exact 1-nearest-neighbour).
"""

from cnnbench.explore.driver import (
    ClassGroups,
    ExploreError,
    ExploreOptions,
    check_run_dataset,
    default_out_dir,
    explore,
    explore_dataset,
)
from cnnbench.explore.embed import (
    PCAResult,
    balanced_sample,
    components_for,
    model_features,
    pca,
    tsne_2d,
)
from cnnbench.explore.knn import knn1_accuracy, knn1_predict
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
    "PCAResult",
    "balanced_sample",
    "check_run_dataset",
    "class_counts",
    "components_for",
    "default_out_dir",
    "explore",
    "explore_dataset",
    "find_duplicates",
    "knn1_accuracy",
    "knn1_predict",
    "mean_std_from_histogram",
    "model_features",
    "pca",
    "pixel_histogram",
    "tsne_2d",
]
