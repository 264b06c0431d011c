"""Shared test set-up: a private decode cache, and where the real CIFAR data is."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_CREATED_CACHE: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    # Decoded CIFAR arrays are cached once per test session (subprocesses inherit it), never
    # in the user's own cache.
    global _CREATED_CACHE
    if "CNNBENCH_TEST_CACHE" not in os.environ:
        _CREATED_CACHE = tempfile.mkdtemp(prefix="cnnbench-test-cache-")
        os.environ["CNNBENCH_TEST_CACHE"] = _CREATED_CACHE
    os.environ["CNNBENCH_CACHE"] = os.environ["CNNBENCH_TEST_CACHE"]
    os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_unconfigure(config: pytest.Config) -> None:
    # The decode cache is ~350 MB per session: a suite that left it behind filled the system
    # temp folder (159 of them, 15 GB, on the team's machine). A cache the caller gave in
    # CNNBENCH_TEST_CACHE is theirs and is kept.
    if _CREATED_CACHE is not None:
        shutil.rmtree(_CREATED_CACHE, ignore_errors=True)


def _data_dir() -> Path | None:
    value = os.environ.get("CNNBENCH_DATA")
    if value and (Path(value) / "cifar10.npz").is_file():
        return Path(value)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real packed CIFAR folder ($CNNBENCH_DATA); tests needing it skip without it."""
    path = _data_dir()
    if path is None:
        pytest.skip("real CIFAR data not found: set CNNBENCH_DATA to the folder with cifar10.npz")
    return path


@pytest.fixture(scope="session")
def cifar10(data_dir: Path):
    """CIFAR-10, decoded once per session."""
    from cnnbench.data import load_dataset

    return load_dataset("cifar10", data_dir=data_dir, show_progress=False)


@pytest.fixture(scope="session")
def trained_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 trained for a few seconds on a small real CIFAR-10 subset (export and
    inference tests share it: trained once per session)."""
    from cnnbench.train import load_config, train

    runs = tmp_path_factory.mktemp("trained-runs")
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


# A run directory as the trainer writes it, with untrained LeNet-5 weights (no data needed):
# shared by the bench and robustness tests.
def make_fake_run(run: Path, model_name: str = "lenet5", test_acc: float = 0.5) -> Path:
    """A run directory as the trainer writes it, untrained weights (best.pt, summary.json)."""
    import torch

    from cnnbench.data import CIFAR10_CLASSES
    from cnnbench.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name)
    run.mkdir(parents=True)
    ckpt = {
        "model": model.state_dict(),
        "model_spec": dict(model.cnnbench_spec),
        "config": {"model": model_name, "dataset": "cifar10", "image_size": 32},
        "epoch": 1,
        "classes": list(CIFAR10_CLASSES),
        "mean": [0.4914, 0.4822, 0.4465],
        "std": [0.2470, 0.2435, 0.2616],
        "input_size": [3, 32, 32],
        "dataset": "cifar10",
    }
    torch.save(ckpt, run / "best.pt")
    summary = {"name": run.name, "status": "complete", "model": model_name,
               "dataset": "cifar10", "test_acc": test_acc}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    return make_fake_run(tmp_path / "fake")
