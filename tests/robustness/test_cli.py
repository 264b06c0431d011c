"""`cnnbench robustness`: its options, its errors, and one short measurement."""

from __future__ import annotations

import argparse

import pytest

from cnnbench.cli import UserError
from cnnbench.cli.robustness import register
from cnnbench.robustness import DEFAULT_IMAGES, GROUPS, ROBUSTNESS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnbench")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_defaults_are_the_protocol():
    args = _parser().parse_args(["robustness", "fastnet_small-cifar10"])
    assert args.runs == ["fastnet_small-cifar10"] and args.images == DEFAULT_IMAGES
    assert not args.full and args.seed == 0 and args.corruptions is None
    assert args.out is None and args.device == "cpu" and callable(args.func)


def test_groups_expand_and_lists_parse():
    args = _parser().parse_args(["robustness", "r1", "r2", "--corruptions", "noise,fog",
                                 "--severities", "1,5", "--full"])  # fmt: skip
    assert args.runs == ["r1", "r2"] and args.full
    assert args.corruptions == [*GROUPS["noise"], "fog"] and args.severities == [1, 5]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--corruptions", "rain"], "unknown corruption or group 'rain'"),
        (["--severities", "one"], "comma list of integers"),
        (["--full", "--images", "10"], "not allowed with argument"),
    ],
)
def test_bad_options_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["robustness", "run", *argv])
    assert info.value.code == 2 and fragment in capsys.readouterr().err


def test_a_bad_run_name_is_a_user_error(tmp_path):
    args = _parser().parse_args(["robustness", str(tmp_path / "nope")])
    with pytest.raises(UserError, match=r"not a run directory, a \.pt checkpoint or a zoo model"):
        args.func(args)
    args = _parser().parse_args(["robustness", str(tmp_path), str(tmp_path), "--out", "x"])
    with pytest.raises(UserError, match="--out takes one run"):
        args.func(args)


def test_a_bad_selection_is_a_user_error(fake_run):
    args = _parser().parse_args(["robustness", str(fake_run), "--severities", "7"])
    with pytest.raises(UserError, match=r"severity must be one of 1\.\.5"):
        args.func(args)


def test_measures_and_prints_a_table(fake_run, data_dir, capsys):
    args = _parser().parse_args(["robustness", str(fake_run), "--images", "10", "--data-dir",
                                 str(data_dir), "--corruptions", "fog,contrast",
                                 "--severities", "2", "--no-figures"])  # fmt: skip
    assert args.func(args) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "10 test images, a seeded subset (seed 0) of 10,000" in out
    assert "fog" in out and "contrast" in out and "mCA" in out and "relative drop" in out
    assert f"written: {fake_run / ROBUSTNESS}" in out
    assert "[2/2] contrast severity 2" in captured.err  # progress
    assert not (fake_run / "robustness").exists()  # --no-figures
