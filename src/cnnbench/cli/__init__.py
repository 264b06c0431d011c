"""The ``cnnbench`` command: one sub-command module per concern, dispatched from here.

Each module in ``_COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
sub-commands with ``set_defaults(func=...)``; ``func(args) -> int`` is the exit code.
Errors a user can fix (bad config, missing data, unknown model...) end as one line on
stderr and exit code 2, never a traceback. That includes what argparse refuses (a bad
value, an unknown choice, a missing argument): every parser is a ``CLIParser``, which
prints one line and a hint to ``--help`` instead of the whole usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

_COMMAND_MODULES = (
    "cnnbench.cli.train",  # models, train, evaluate
    "cnnbench.cli.study",  # study, report
    "cnnbench.cli.explore",  # explore
    "cnnbench.cli.transfer",  # transfer
    "cnnbench.cli.bench",  # bench, export, predict, pick
    "cnnbench.cli.serve",  # serve
    "cnnbench.cli.robustness",  # robustness
    "cnnbench.cli.tune",  # tune
    "cnnbench.cli.zoo",  # zoo
    "cnnbench.cli.recipes",  # recipes
)


class CLIParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line plus a hint, then exit code 2.

    ``cnnbench train --lr abc`` prints
    ``cnnbench train: error: argument --lr: invalid float value: 'abc' (see: cnnbench train
    --help)`` instead of the usage of a 40-option command. Sub-parsers inherit the class:
    ``add_subparsers`` builds them with ``type(self)``.
    """

    def error(self, message: str) -> NoReturn:
        one_line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {one_line} (see: {self.prog} --help)\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        # Unknown options are reported by the root parser; name the sub-command they follow.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            _chosen_parser(self, parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The innermost sub-command parser ``args`` went through (``cnnbench zoo show``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None))
            if chosen is not None:
                return _chosen_parser(chosen, args)
    return parser


class UserError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits with 2."""


def parse_key_values(
    items: Sequence[str], option: str, *, underscores: bool = False
) -> dict[str, Any]:
    """The ``KEY=VALUE`` items of a repeatable option (``--set``, ``--model-arg``) as a dict.

    Each VALUE is parsed as YAML (``0.5`` a float, ``[1, 2]`` a list, ``relu`` a string);
    surrounding spaces of a KEY are dropped, and with ``underscores`` its dashes become
    underscores (``--set batch-size=64``). An item without ``=`` or KEY is a UserError.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.replace("-", "_") if underscores else key] = yaml.safe_load(value)
    return out


def _user_errors() -> tuple[type[BaseException], ...]:
    from cnnbench.bench.errors import BenchError
    from cnnbench.data import DataError
    from cnnbench.rundir import RunDirError
    from cnnbench.train import CheckpointError, ConfigError, RunExistsError

    return (
        UserError, ConfigError, DataError, CheckpointError, RunExistsError, BenchError,
        RunDirError,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render --help in the docs)."""
    from cnnbench import __version__

    parser = CLIParser(
        prog="cnnbench",
        description="Train, compare, time and ship CNNs for fast-response image classification.",
    )
    parser.add_argument("--version", action="version", version=f"cnnbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cnnbench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        print(f"cnnbench {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnbench {args.command}: interrupted", file=sys.stderr)
        return 130
