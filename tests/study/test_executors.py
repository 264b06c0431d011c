"""Studies on several workers: transfer parents before children, and the Ray executor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cnnbench.study.runner import StudyProgress, StudyResult, _train, _waves, run_study
from cnnbench.study.spec import parse_study
from cnnbench.train import is_complete, load_config
from cnnbench.train.config import ConfigError

BASE = {
    "model": "lenet5",
    "dataset": "cifar10",
    "epochs": 1,
    "batch_size": 100,
    "train_subset": 400,
    "val_size": 200,
    "test_subset": 200,
    "threads": 1,
}


def test_transfer_children_wait_for_their_parents(tmp_path):
    study_dir = tmp_path / "s"
    parent = load_config({**BASE, "name": "parent", "dataset": "cifar100"})
    child = load_config(
        {
            **BASE,
            "name": "child",
            "transfer": {"parent": str(study_dir / "parent"), "policy": "head"},
        }
    )
    grandchild = load_config(
        {**BASE, "name": "grandchild", "transfer": {"parent": str(study_dir / "child" / "best.pt")}}
    )
    outside = load_config(
        {**BASE, "name": "outside", "transfer": {"parent": str(tmp_path / "elsewhere")}}
    )
    waves = _waves([grandchild, outside, child, parent], study_dir)
    assert [[c.name for c in w] for w in waves] == [
        ["outside", "parent"],
        ["child"],
        ["grandchild"],
    ]
    loop = load_config({**BASE, "name": "child", "transfer": {"parent": str(study_dir / "child")}})
    with pytest.raises(ConfigError, match="each other's transfer parent"):
        _waves([loop], study_dir)


def test_ray_executor_without_ray_is_a_clear_error(tmp_path, monkeypatch):
    from cnnbench.study.ray_backend import run_with_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'cnnbench\[ray\]'"):
        run_with_ray([load_config(BASE)], tmp_path, "x")


def test_ray_executor_trains_the_same_run_directories(tmp_path, data_dir):
    pytest.importorskip("ray")
    study = parse_study(
        {
            "name": "r",
            "base": {**BASE, "data_dir": str(data_dir)},
            "grid": {"optimizer": ["sgd", "adam"]},
        },
    )
    result = run_study(
        study, runs_dir=tmp_path, workers=2, executor="ray", progress=False, bench=False
    )
    assert result.failed == {}
    assert sorted(result.trained) == sorted(c.run_name() for c in study.runs)
    for config in study.runs:
        assert is_complete(tmp_path / "r" / config.run_name())
    # a second pass finds everything complete and starts no Ray task
    again = run_study(
        study, runs_dir=tmp_path, workers=2, executor="ray", progress=False, bench=False
    )
    assert again.trained == [] and len(again.skipped) == 2


class _Scripted:
    """An executor that trains nothing: each run ends with the error it is given, or None."""

    def __init__(self, errors: dict[str, BaseException], one_at_a_time: bool) -> None:
        self.errors, self.one_at_a_time = errors, one_at_a_time

    def run(self, wave):
        for config in wave:
            yield config.run_name(), self.errors.get(config.run_name())


def test_every_executor_reports_through_one_record(tmp_path, monkeypatch):
    measured = []
    monkeypatch.setattr(
        "cnnbench.study.runner._bench_hook",
        lambda: lambda run_dir, quick, **settings: measured.append(Path(run_dir).name),
    )
    runs = [load_config({**BASE, "name": n}) for n in ("a", "b")]
    for one_at_a_time in (True, False):
        result, messages = StudyResult(study_dir=tmp_path), []
        runner = _Scripted({"b": RuntimeError("boom")}, one_at_a_time)
        quiet = StudyProgress("s", {"a": 1.0, "b": 1.0}, [], False, messages.append)
        _train(runner, runs, tmp_path, result, quiet, messages.append)
        assert result.trained == ["a"] and result.failed == {"b": "RuntimeError: boom"}
        assert messages == ["run b failed: RuntimeError: boom"]
    assert measured == ["a", "a"]  # a trained run is measured, a failed one is not
