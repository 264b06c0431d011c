"""Real (small) training runs on CIFAR-10: run directory, checkpoints, exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnbench.train import (
    ConfigError,
    RunExistsError,
    load_checkpoint,
    load_config,
    model_from_checkpoint,
    train,
)

SMALL = {
    "model": "lenet5",
    "model_args": {"activation": "relu", "pool": "max"},  # learns fast enough for 2 epochs
    "dataset": "cifar10",
    "optimizer": "adam",
    "lr": 0.002,
    "epochs": 2,
    "batch_size": 64,
    "train_subset": 1500,
    "val_size": 500,
    "test_subset": 500,
    "threads": 1,
    "name": "small",
}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def small_run(data_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config({**SMALL, "data_dir": str(data_dir)})
    summary = train(cfg, runs_dir=runs, progress=False)
    return runs / "small", summary


def test_run_directory_is_complete(small_run):
    run, summary = small_run
    assert {"config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt"} <= {
        p.name for p in run.iterdir()
    }
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["status"] == "complete"
    assert summary["train_images"] == 1500 and summary["val_images"] == 500
    assert summary["test_images"] == 500
    assert summary["params"] == sum(
        p.numel() for p in model_from_checkpoint(run / "best.pt")[0].parameters()
    )
    assert summary["macs"] > 0 and summary["versions"]["torch"] == torch.__version__
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s"):
            assert key in r
        assert 0.0 <= r["val_acc"] <= 1.0
    assert summary["best_val_acc"] == max(r["val_acc"] for r in rows)
    # Two epochs of LeNet on 1,500 images already beat chance (10 %) on held-out data.
    assert summary["test_acc"] > 0.15


def test_checkpoints_describe_themselves(small_run):
    run, summary = small_run
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["model_spec"]["name"] == "lenet5"
    assert ckpt["epoch"] == summary["best_epoch"]
    assert ckpt["config"]["lr"] == SMALL["lr"]
    assert len(ckpt["classes"]) == 10 and len(ckpt["mean"]) == 3
    model, _ = model_from_checkpoint(run / "best.pt")
    assert not model.training


def test_existing_run_is_never_overwritten(small_run, data_dir):
    run, summary = small_run
    cfg = load_config({**SMALL, "data_dir": str(data_dir)})
    before = (run / "best.pt").stat().st_mtime_ns
    with pytest.raises(RunExistsError, match="--resume"):
        train(cfg, runs_dir=run.parent, progress=False)
    # --resume on a complete run returns it untouched
    assert train(cfg, runs_dir=run.parent, resume=True, progress=False) == summary
    assert (run / "best.pt").stat().st_mtime_ns == before
    # resuming with different settings is refused
    with pytest.raises(ConfigError, match="other settings"):
        train(load_config({**SMALL, "lr": 0.5}), runs_dir=run.parent, resume=True)


def _cli(runs: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "cnnbench", "train", "--runs-dir", str(runs), "--quiet"]
    for key, value in {**SMALL, "epochs": 3, "train_subset": 4000, "name": "r"}.items():
        if key == "model_args":
            args += [f"--model-arg={k}={v}" for k, v in value.items()]
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args + list(extra)


def test_killed_run_resumes_to_identical_metrics(data_dir, tmp_path):
    """SIGKILL a training subprocess in the middle of epoch 2, resume, compare every metric."""
    env = {**os.environ, "CNNBENCH_DATA": str(data_dir)}
    ref = subprocess.run(_cli(tmp_path / "ref"), env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr

    runs = tmp_path / "killed"
    proc = subprocess.Popen(_cli(runs), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    metrics = runs / "r" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    first = json.loads(metrics.read_text().splitlines()[0])
    time.sleep(first["epoch_time_s"] * 0.4)  # well inside epoch 2
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (runs / "r" / "summary.json").exists()

    again = subprocess.run(_cli(runs), env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = subprocess.run(_cli(runs, "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
    got = [{k: r[k] for k in keys} for r in _metrics(runs / "r")]
    want = [{k: r[k] for k in keys} for r in _metrics(tmp_path / "ref" / "r")]
    assert got == want
    s_got = json.loads((runs / "r" / "summary.json").read_text())
    s_want = json.loads((tmp_path / "ref" / "r" / "summary.json").read_text())
    assert s_got["test_acc"] == s_want["test_acc"]
    assert s_got["best_epoch"] == s_want["best_epoch"]
