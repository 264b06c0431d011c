from __future__ import annotations

import json

import pytest

from cnnbench.cli import UserError, build_parser, main, parse_key_values


def test_models_lists_every_registered_model(capsys):
    from cnnbench.models import list_models

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_models()
    assert all(r["params"] > 0 and r["macs"] > 0 for r in rows)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--lr", "-0.1"], "lr: Input should be greater than 0"),
        (["train", "--lr", "0"], "lr: Input should be greater than 0"),
        (["train", "--model", "vgg99"], "unknown model 'vgg99'"),
        (["train", "--model-arg", "oops"], "KEY=VALUE"),
    ],
)
def test_bad_options_exit_2_with_one_line(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_config_key_in_yaml(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: lenet5\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(cfg), "--runs-dir", str(tmp_path)]) == 2
    assert "learning_rate: unknown option" in capsys.readouterr().err


def test_argparse_type_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "many"])
    assert exc.value.code == 2


def test_help_explains_options_with_units():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["train"].format_help()
    for fragment in (
        "--lr",
        "per optimizer step",
        "--batch-size",
        "images per optimizer step",
        "--warmup-epochs",
        "in epochs",
        "--resume",
        "--model-arg",
    ):
        assert fragment in text


def test_evaluate_a_run_directory_and_its_checkpoint_file(tmp_path, data_dir, capsys):
    """`cnnbench evaluate` reads the run's checkpoint and the dataset it was trained on."""
    from cnnbench.models import create_model
    from cnnbench.train import save_checkpoint

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10)
    run = tmp_path / "lenet"
    classes = [f"c{i}" for i in range(10)]
    save_checkpoint(
        {"model": model.state_dict(), "model_spec": model.cnnbench_spec, "epoch": 3,
         "config": {"dataset": "cifar10", "data_dir": str(data_dir)}, "classes": classes,
         "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "input_size": [3, 32, 32]},
        run / "last.pt",
    )  # fmt: skip
    assert main(["evaluate", str(run), "--checkpoint", "last", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epoch"] == 3 and result["classes"] == classes
    assert sum(map(sum, result["confusion_matrix"])) == 10_000  # the full CIFAR-10 test split
    assert main(["evaluate", str(run / "last.pt"), "--checkpoint", "last"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{run / 'last.pt'} (last.pt, epoch 3): test accuracy ")
    assert f"{100 * result['test_acc']:.2f}%" in out
    assert main(["evaluate", str(run)]) == 2  # no best.pt yet
    assert "no checkpoint at" in capsys.readouterr().err


def test_evaluate_takes_a_zoo_name(capsys, data_dir):
    """`cnnbench evaluate NAME` reads the shipped weights and re-measures the card's accuracy
    on the full test split; an unknown name is the one-line error listing the zoo."""
    from cnnbench import zoo

    assert main(["evaluate", "lenet5_relu-cifar10", "--data-dir", str(data_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sum(map(sum, result["confusion_matrix"])) == 10_000
    card = next(c for c in zoo.cards() if c["name"] == "lenet5_relu-cifar10")
    assert abs(result["test_acc"] - card["shipped_test_acc"]) < 1e-3
    assert main(["evaluate", "no_such_model-cifar10"]) == 2
    assert "zoo model" in capsys.readouterr().err


def test_key_value_options_share_one_parser():
    """--set (study) and --model-arg (train, transfer): KEY=VALUE, VALUE parsed as YAML."""
    parsed = parse_key_values(["a=1", " b = [1, 2]", "c=relu", "d="], "--x")
    assert parsed == {"a": 1, "b": [1, 2], "c": "relu", "d": None}
    assert parse_key_values(["batch-size=64"], "--set", underscores=True) == {"batch_size": 64}
    assert parse_key_values(["width-mult=0.5"], "--model-arg") == {"width-mult": 0.5}
    for bad in ("oops", "=1", " =1"):
        with pytest.raises(UserError, match="--x expects KEY=VALUE"):
            parse_key_values([bad], "--x")
