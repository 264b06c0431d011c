"""Fixtures of the bench tests: a fake run of an untrained model, and a tiny trained run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]  # fmt: skip
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def make_fake_run(run: Path, model_name: str = "lenet5", test_acc: float = 0.5) -> Path:
    """A run directory as the trainer writes it, with untrained weights (no data needed)."""
    from cnnbench.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name)
    run.mkdir(parents=True)
    ckpt = {"model": model.state_dict(), "model_spec": dict(model.cnnbench_spec),
            "config": {"model": model_name, "dataset": "cifar10", "image_size": 32},
            "epoch": 1, "classes": CIFAR_CLASSES, "mean": list(MEAN), "std": list(STD)}  # fmt: skip
    torch.save(ckpt, run / "best.pt")
    summary = {"name": run.name, "status": "complete", "model": model_name,
               "dataset": "cifar10", "test_acc": test_acc}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    return make_fake_run(tmp_path / "fake")


@pytest.fixture(scope="session")
def trained_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 trained for a few seconds on a small real CIFAR-10 subset."""
    from cnnbench.train import load_config, train

    runs = tmp_path_factory.mktemp("bench-runs")
    cfg = load_config({"model": "lenet5", "dataset": "cifar10", "optimizer": "adam",
                       "lr": 0.002, "epochs": 2, "batch_size": 64, "train_subset": 2000,
                       "val_size": 500, "test_subset": 500, "threads": 1, "name": "tiny",
                       "data_dir": str(data_dir)})  # fmt: skip
    train(cfg, runs_dir=runs, progress=False)
    return runs / "tiny"
