"""Hand-written study folders (no training): runs in the trainer's on-disk format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnbench.train import load_config


def _make_run(
    study: Path,
    *,
    model: str = "lenet5",
    optimizer: str = "adam",
    lr: float = 0.001,
    seed: int = 0,
    test_acc: float = 0.5,
    dataset: str = "cifar10",
    epochs: int = 3,
    params: int = 62_006,
    macs: int = 651_720,
    name: str | None = None,
    **summary: Any,
) -> Path:
    """Write one complete run: config.yaml, metrics.jsonl, summary.json."""
    config = load_config(
        {
            "model": model,
            "optimizer": optimizer,
            "lr": lr,
            "seed": seed,
            "dataset": dataset,
            "epochs": epochs,
        }
    )
    name = name or f"{model}-{optimizer}-lr{lr:g}-s{seed}"
    run = study / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        yaml.safe_dump({**config.model_dump(mode="json"), "name": name})
    )
    rows = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_acc": test_acc * e / epochs - 0.05,
            "val_loss": 2.1 / e,
            "val_acc": test_acc * e / epochs,
            "lr": lr,
            "epoch_time_s": 1.0,
            "images_per_s": 1000.0,
        }
        for e in range(1, epochs + 1)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(
        json.dumps({
            "name": name, "status": "complete", "model": model, "model_args": {},
            "dataset": dataset, "optimizer": optimizer, "lr": lr, "epochs": epochs,
            "seed": seed, "batch_size": 128, "train_images": 45000, "val_images": 5000,
            "test_images": 10000, "best_val_acc": test_acc + 0.01, "best_epoch": epochs,
            "test_acc": test_acc, "test_loss": 1.0, "params": params, "macs": macs,
            "train_time_s": 12.5, "images_per_s": 3600.0, "device": "Test CPU (2 cores)",
            "threads": 2, "versions": {"torch": "2.x", "python": "3.11"},
            "git_commit": "abc123", "command": f"cnnbench train --name {name}",
            "transfer": None, **summary,
        })
    )  # fmt: skip
    return run


@pytest.fixture
def make_run():
    """``make_run(study_dir, **settings)`` writes one complete run."""
    return _make_run


@pytest.fixture
def table1_study(tmp_path: Path) -> Path:
    """A study shaped like the paper's Table 1 (subset), two seeds per setting."""
    return _table1(tmp_path / "paperish")


@pytest.fixture(scope="module")
def table1_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Table 1-shaped study's report, rendered once: its paths, Markdown and HTML."""
    from cnnbench.report import write_report

    paths = write_report(_table1(tmp_path_factory.mktemp("t1") / "paperish"))
    return {**paths, "md": paths["markdown"].read_text(), "html_text": paths["html"].read_text()}


def _table1(study: Path) -> Path:
    accs = {
        ("lenet5", "adam", 0.001): (0.60, 0.62),
        ("mobilenetv2_reduced", "sgd", 0.01): (0.84, 0.86),
        ("mobilenetv2_reduced", "adam", 0.01): (0.80, 0.83),
        ("mobilenetv2_reduced", "sgd", 0.1): (0.70, 0.72),
    }
    for (model, opt, lr), pair in accs.items():
        for seed, acc in enumerate(pair):
            big = model != "lenet5"
            _make_run(
                study,
                model=model,
                optimizer=opt,
                lr=lr,
                seed=seed,
                test_acc=acc,
                params=1_236_746 if big else 62_006,
                macs=52_728_320 if big else 651_720,
            )
    return study
