"""Hand-written study folders (no training): runs in the trainer's on-disk format, and a
hand-written zoo (the shipped one changes as models are added: no test reads it)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnbench.train import load_config


@pytest.fixture(autouse=True, scope="module")
def _empty_zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every report test starts with an empty zoo (module scope: the module-scoped reports
    see it too, other test folders never do); ``fake_zoo`` fills one."""
    root = tmp_path_factory.mktemp("empty-zoo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cnnbench.zoo.root", lambda: root)
        yield root


def _bench_json(latency: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """A bench.json as ``cnnbench.bench`` writes it: backend -> (p50, p99) ms, batch 1, 1 thread."""
    results = [
        {"backend": b, "device": "cpu", "threads": 1, "batch": 1, "p50_ms": p50,
         "p90_ms": (p50 + p99) / 2, "p99_ms": p99, "iters": 300}
        for b, (p50, p99) in latency.items()
    ]  # fmt: skip
    return {"format": 1, "results": results, "errors": [], "skipped": [], "quick": True}


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
    config: dict[str, Any] | None = None,
    latency: dict[str, tuple[float, float]] | None = None,
    int8_acc: float | None = None,
    **summary: Any,
) -> Path:
    """Write one complete run: config.yaml, metrics.jsonl, summary.json; with ``latency``
    (backend -> (p50, p99) ms) its bench.json, with ``int8_acc`` the int8 export's sidecar.
    ``config``: more run options (e.g. a study's resolved run)."""
    config = load_config(
        {
            "model": model,
            "optimizer": optimizer,
            "lr": lr,
            "seed": seed,
            "dataset": dataset,
            "epochs": epochs,
            **{k: v for k, v in (config or {}).items() if k != "name"},
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
            "test_acc": test_acc, "test_acc_se": math.sqrt(test_acc * (1 - test_acc) / 10000),
            "test_loss": 1.0, "params": params, "macs": macs,
            "train_time_s": 12.5, "images_per_s": 3600.0, "device": "Test CPU (2 cores)",
            "threads": 2, "versions": {"torch": "2.x", "python": "3.11"},
            "git_commit": "abc123", "command": f"cnnbench train --name {name}",
            "transfer": None, **summary,
        })
    )  # fmt: skip
    if latency is not None:
        (run / "bench.json").write_text(json.dumps(_bench_json(latency)))
    if int8_acc is not None:
        (run / "export").mkdir()
        sidecar = {"export_eval": {"test_images": 10000, "onnx_acc": int8_acc}}
        (run / "export" / "model.int8.json").write_text(json.dumps(sidecar))
    return run


def _make_zoo_entry(
    root: Path,
    name: str,
    *,
    model: str = "fastnet_small",
    dataset: str = "cifar10",
    test_acc: float = 0.9158,
    latency: dict[str, tuple[float, float]] | None = None,
    int8_acc: float | None = None,
    **card: Any,
) -> Path:
    """One zoo entry as ``cnnbench zoo add`` writes it: zoo.json (the card), summary.json."""
    entry = root / name
    entry.mkdir(parents=True)
    lat = {"device": "Test CPU", "threads": 1}
    lat |= {b: {"p50_ms": p50, "p99_ms": p99} for b, (p50, p99) in (latency or {}).items()}
    full = {
        "name": name, "model": model, "model_args": {}, "dataset": dataset, "recipe": "fast",
        "epochs": 16, "batch_size": 512, "seed": 0, "train_images": 45000, "val_images": 5000,
        "test_images": 10000, "best_val_acc": test_acc + 0.002, "best_epoch": 16,
        "test_acc": test_acc, "test_acc_se": math.sqrt(test_acc * (1 - test_acc) / 10000),
        "params": 497_826, "macs": 33_066_272, "train_time_s": 714.8, "fit_time_s": 735.9,
        "images_per_s": 1046.7, "command": f"cnnbench train --name {name}",
        "latency": lat if latency else None,
        "int8": {"onnx_int8_acc": int8_acc, "onnx_fp32_acc": test_acc} if int8_acc else None,
        "sha256": "0" * 64, **card,
    }  # fmt: skip
    (entry / "zoo.json").write_text(json.dumps(full))
    summary = {"name": name, "status": "complete", "model": model, "dataset": dataset,
               "optimizer": "sgd", "lr": 0.75, "epochs": 16, "test_acc": test_acc,
               "test_images": 10000, "did_not_learn": None}  # fmt: skip
    (entry / "summary.json").write_text(json.dumps(summary))
    return entry


@pytest.fixture
def fake_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``fake_zoo(name, **card)`` adds an entry to a zoo that replaces the shipped one."""
    root = tmp_path / "zoo"
    root.mkdir()
    monkeypatch.setattr("cnnbench.zoo.root", lambda: root)
    return lambda name, **card: _make_zoo_entry(root, name, **card)


@pytest.fixture
def bench_json():
    """``bench_json({backend: (p50, p99)})``: a bench.json dict (batch 1, one CPU thread)."""
    return _bench_json


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
