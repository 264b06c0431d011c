from __future__ import annotations

import pytest

from cnnbench.train.config import ConfigError, RunConfig, load_config


def test_defaults_are_valid():
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    assert cfg.run_name() == "mobilenetv2_reduced-cifar10-sgd-lr0.01-s0"


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: lenet5\nlr: 0.001\noptimizer: adam\nmodel_args: {variant: relu}\n")
    cfg = load_config(path, lr=0.1, epochs=None)
    assert cfg.model == "lenet5" and cfg.optimizer == "adam"
    assert cfg.lr == 0.1, "command-line override wins"
    assert cfg.epochs == 15, "None means not given"
    assert cfg.model_args == {"variant": "relu"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"lr": 0}, "lr: Input should be greater than 0"),
        ({"lr": -0.1}, "lr: Input should be greater than 0"),
        ({"epochs": "many"}, "epochs:"),
        ({"learning_rate": 0.1}, "learning_rate: unknown option"),
        ({"model": "vgg99"}, "unknown model 'vgg99'; choose one of:"),
        ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
        ({"optimizer": "rmsprop"}, "optimizer:"),
        ({"epochs": 3, "warmup_epochs": 5}, "warmup_epochs"),
    ],
)
def test_bad_values_give_one_line(data, fragment):
    with pytest.raises(ConfigError) as exc:
        load_config(data)
    msg = str(exc.value)
    assert fragment in msg
    assert "\n" not in msg
    assert "pydantic" not in msg


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    seq = tmp_path / "seq.yaml"
    seq.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(seq)
