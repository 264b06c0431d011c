"""What argparse refuses ends as one stderr line with a hint to --help, and exit code 2."""

from __future__ import annotations

import argparse

import pytest

from cnnbench.cli import CLIParser, build_parser, main


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n")
    assert "usage:" not in captured.err
    return captured.err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["train", "--lr", "abc"],
            "cnnbench train: error: argument --lr: invalid float value: 'abc' "
            "(see: cnnbench train --help)\n",
        ),
        (
            ["train", "--epochs", "many"],
            "cnnbench train: error: argument --epochs: invalid int value: 'many' "
            "(see: cnnbench train --help)\n",
        ),
    ],
)
def test_bad_value_is_one_line_with_a_hint(argv, expected, capsys):
    assert _refused(argv, capsys) == expected


def test_unknown_choice(capsys):
    err = _refused(["train", "--optimizer", "rmsprop-ish"], capsys)
    assert err.startswith("cnnbench train: error: argument --optimizer: invalid choice: ")
    assert "'sgd'" in err and err.endswith("(see: cnnbench train --help)\n")


def test_missing_required_argument(capsys):
    err = _refused(["serve"], capsys)
    assert err.startswith("cnnbench serve: error: the following arguments are required: run")
    assert err.endswith("(see: cnnbench serve --help)\n")


@pytest.mark.parametrize("argv", [["frobnicate"], []])
def test_unknown_or_missing_subcommand(argv, capsys):
    err = _refused(argv, capsys)
    assert err.startswith("cnnbench: error: ") and "COMMAND" in err
    assert err.endswith("(see: cnnbench --help)\n")


def test_unknown_option_names_the_subcommand_it_follows(capsys):
    err = _refused(["zoo", "show", "x", "--bogus"], capsys)
    assert err == (
        "cnnbench zoo show: error: unrecognized arguments: --bogus "
        "(see: cnnbench zoo show --help)\n"
    )


def test_every_subcommand_parser_is_a_cli_parser():
    """A command module building its own ArgumentParser would print the whole usage again."""

    def parsers(p: argparse.ArgumentParser):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    found = list(parsers(build_parser()))
    assert len(found) > 10
    assert all(isinstance(p, CLIParser) for p in found), [
        p.prog for p in found if not isinstance(p, CLIParser)
    ]


def test_help_still_prints_the_full_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    assert "usage: cnnbench train" in capsys.readouterr().out
