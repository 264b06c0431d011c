"""Fixtures of the bench tests: a fake run of an untrained model (no data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnbench.data import CIFAR10_CLASSES

CIFAR_CLASSES = list(CIFAR10_CLASSES)
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def make_fake_run(run: Path, model_name: str = "lenet5", test_acc: float = 0.5) -> Path:
    """A run directory as the trainer writes it, with untrained weights (no data needed)."""
    from cnnbench.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name)
    run.mkdir(parents=True)
    ckpt = {
        "model": model.state_dict(),
        "model_spec": dict(model.cnnbench_spec),
        "config": {"model": model_name, "dataset": "cifar10", "image_size": 32},
        "epoch": 1,
        "classes": CIFAR_CLASSES,
        "mean": list(MEAN),
        "std": list(STD),
    }
    torch.save(ckpt, run / "best.pt")
    summary = {
        "name": run.name,
        "status": "complete",
        "model": model_name,
        "dataset": "cifar10",
        "test_acc": test_acc,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    return make_fake_run(tmp_path / "fake")
