"""Fixtures of the inference tests: a tiny trained run for the Predictor and `cnnbench predict`.

``trained_run`` is the same tiny run as in the other rooms' tests (pytest's importlib mode
lets no conftest import another's fixtures).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 trained for a few seconds on a small real CIFAR-10 subset."""
    from cnnbench.train import load_config, train

    runs = tmp_path_factory.mktemp("inference-runs")
    cfg = load_config(
        {
            "model": "lenet5",
            "dataset": "cifar10",
            "optimizer": "adam",
            "lr": 0.002,
            "epochs": 2,
            "batch_size": 64,
            "train_subset": 2000,
            "val_size": 500,
            "test_subset": 500,
            "threads": 1,
            "name": "tiny",
            "data_dir": str(data_dir),
        }
    )
    train(cfg, runs_dir=runs, progress=False)
    return runs / "tiny"
