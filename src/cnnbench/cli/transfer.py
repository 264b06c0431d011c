"""`cnnbench transfer`: fine-tune a child run from a parent run with a freeze policy.

Every `cnnbench train` option works here too (they come from ``RunConfig``); the transfer
options come from ``TransferConfig``, so their help and validation live in
``cnnbench/train/config.py`` as well. The model and its arguments default to the parent's.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from cnnbench import rundir
from cnnbench.cli.train import RESUME_HELP, _field_kind, add_config_options, config_overrides
from cnnbench.train.config import TransferConfig

# TransferConfig fields with their own flag name; the rest are --<field>.
_TRANSFER_FLAGS = {"parent": "--from"}


def _transfer_dest(name: str) -> str:
    return f"transfer_{name}"


def _add_transfer_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("transfer options")
    for name, field in TransferConfig.model_fields.items():
        flag = _TRANSFER_FLAGS.get(name, "--" + name.replace("_", "-"))
        kind, choices = _field_kind(field.annotation)
        default = "required" if field.is_required() else field.get_default()
        group.add_argument(
            flag,
            dest=_transfer_dest(name),
            type=kind,
            choices=choices,
            default=None,
            metavar=None if choices else name.upper(),
            help=f"{field.description} (default: {default})",
        )


def _parent_name(parent: Path) -> str:
    """``runs/foo`` -> foo; ``runs/foo/<best or last>.pt`` -> foo; ``models/bar.pt`` -> bar."""
    if parent.suffix == ".pt":
        return parent.parent.name if parent.name in (rundir.BEST, rundir.LAST) else parent.stem
    return parent.name


def resolve_transfer_config(args: argparse.Namespace):
    """The child's RunConfig: --config file, then the command line, then the parent's model."""
    from cnnbench.cli import UserError
    from cnnbench.train import load_checkpoint, load_config
    from cnnbench.train.transfer import check_transfer, parent_checkpoint_path, parent_model_args

    data: dict[str, Any] = {}
    if args.config is not None:
        # Only what the file sets: unset fields must stay open to the parent's defaults.
        data = load_config(args.config).model_dump(mode="json", exclude_unset=True)
    transfer = dict(data.get("transfer") or {})
    for name in TransferConfig.model_fields:
        value = getattr(args, _transfer_dest(name))
        if value is not None:
            transfer[name] = value
    if "parent" not in transfer:
        raise UserError("--from is required: the parent run directory or a .pt checkpoint")
    data.update(config_overrides(args))
    data["transfer"] = transfer

    tc = TransferConfig.model_validate(transfer)
    spec = load_checkpoint(parent_checkpoint_path(tc))["model_spec"]
    if "model" not in data:
        data["model"] = spec["name"]
        data.setdefault("model_args", parent_model_args(spec))
    if "name" not in data:
        dataset = str(data.get("dataset", "cifar10")).split(":", 1)[0]
        data["name"] = f"{_parent_name(Path(tc.parent))}-to-{dataset}-{tc.policy}"
    config = load_config(data)
    check_transfer(config)
    return config


def _cmd_transfer(args: argparse.Namespace) -> int:
    from cnnbench.rundir import read_summary
    from cnnbench.train import train

    config = resolve_transfer_config(args)
    command = "cnnbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    summary = train(
        config, runs_dir=args.runs_dir, resume=args.resume, progress=not args.quiet, command=command
    )
    t = config.transfer
    assert t is not None
    line = (
        f"{summary['name']}: test accuracy {summary['test_acc']:.2%} "
        f"({t.policy}{f' k={t.k}' if t.policy == 'last-k' else ''}, backbone lr x"
        f"{t.backbone_lr_mult:g}, {summary['train_time_s']:.0f} s training)"
    )
    parent = read_summary(t.parent) if Path(t.parent).is_dir() else None
    if parent and parent.get("test_acc") is not None:
        line += (
            f"\nparent {parent['name']} ({parent['dataset']}): test accuracy "
            f"{parent['test_acc']:.2%}; child/parent {summary['test_acc'] / parent['test_acc']:.2f}"
        )
    print(f"{line}\nrun directory: {Path(args.runs_dir) / config.run_name()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the transfer sub-command."""
    p = sub.add_parser(
        "transfer",
        help="fine-tune a trained run on another dataset",
        description="Start from a parent run's checkpoint (--from RUN_DIR or a .pt file), put a "
        "fresh head on it for the new dataset and fine-tune with a freeze policy: head (only "
        "the head trains), last-k (the last k backbone groups + head), full (everything) or "
        "gradual (one more group every --gradual-every epochs, from the end). The backbone "
        "learns at --lr x --backbone-lr-mult. Model and model arguments default to the "
        "parent's; the run name defaults to <parent>-to-<dataset>-<policy>. Every option of "
        "`cnnbench train` applies.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file of run options (may hold a transfer: section)",
    )
    p.add_argument(
        "--runs-dir", default="runs", help="parent folder of run directories (default: runs)"
    )
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    _add_transfer_options(p)
    add_config_options(p)
    p.set_defaults(func=_cmd_transfer)
