from __future__ import annotations

import json

import pytest

from cnnbench.cli import build_parser, main


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
