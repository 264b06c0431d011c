"""A real (tiny) Optuna search on CIFAR-10, its validation, and its resumption."""

from __future__ import annotations

import json

import pytest
import yaml

from cnnbench.cli import main
from cnnbench.train.config import ConfigError
from cnnbench.tune import load_search, run_search

pytest.importorskip("optuna")


def _write(tmp_path, **kw):
    data = {
        "name": "t",
        "base": {
            "model": "lenet5",
            "model_args": {"activation": "relu", "pool": "max"},
            "train_subset": 600,
            "val_size": 300,
            "test_subset": 200,
            "epochs": 2,
            "batch_size": 100,
            "threads": 1,
        },
        "search": {"optimizer": ["sgd", "adam"], "lr": {"low": 1e-3, "high": 0.1, "log": True}},
        "trials": 3,
        "startup_trials": 2,
    }
    data.update(kw)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"search": {"lr": {"low": 0.1, "high": 0.01}}}, "low must be below high"),
        ({"search": {"lr": {"low": 0, "high": 0.1, "log": True}}}, "log range needs low > 0"),
        ({"search": {"learning_rate": [0.1]}}, "unknown run option 'learning_rate'"),
        ({"search": {"optimizer": ["sgd", "rmsprop"]}}, "search.optimizer='rmsprop'"),
        ({"search": {}}, "search: must map"),
        ({"trials": 0}, "trials must be a positive integer"),
        ({"bogus": 1}, "unknown key 'bogus'"),
    ],
)
def test_bad_search_files(tmp_path, change, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        load_search(_write(tmp_path, **change))


def test_small_real_search_and_resume(tmp_path, data_dir):
    spec = load_search(_write(tmp_path))
    runs = tmp_path / "runs"
    result = run_search(spec, runs_dir=runs, progress=False, overrides={"data_dir": str(data_dir)})
    assert result["complete"] + result["pruned"] == 3
    best = result["best"]
    assert set(best["params"]) == {"optimizer", "lr"}
    summary = json.loads((runs / "t" / best["run"] / "summary.json").read_text())
    assert summary["best_val_acc"] == pytest.approx(best["value"])
    assert summary["optimizer"] == best["params"]["optimizer"]
    # Running again with a higher target continues the same search (2 more trials).
    spec.trials = 5
    again = run_search(spec, runs_dir=runs, progress=False, overrides={"data_dir": str(data_dir)})
    assert again["complete"] + again["pruned"] == 5
    assert len(list((runs / "t").glob("trial-*"))) == 5


def test_cli_reports_bad_file(tmp_path, capsys):
    assert main(["tune", str(_write(tmp_path, trials=-1))]) == 2
    assert "trials must be a positive integer" in capsys.readouterr().err
