"""`cnnbench models`, `cnnbench train`, `cnnbench evaluate`.

The options of `train` are generated from ``RunConfig``'s fields, so every option's help text
(with its unit) and its validation live in one place: ``cnnbench/train/config.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import types
import typing
from pathlib import Path
from typing import Any

from cnnbench import rundir
from cnnbench.train.config import RunConfig

# Fields the CLI handles itself (nested sections, free-form dicts) or a run writes (re-plans).
_SKIP_FIELDS = {"model_args", "transfer", "budget_replans"}
RESUME_HELP = f"continue an interrupted run from its {rundir.LAST} (a complete run is left as is)"


def _field_kind(annotation: Any) -> tuple[Any, tuple | None]:
    """(python type, choices) of a RunConfig field annotation, unwrapping Optional."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _field_kind(args[0])
    if origin is typing.Literal:
        return str, typing.get_args(annotation)
    return annotation, None


def add_config_options(parser: argparse.ArgumentParser, skip: set[str] = frozenset()) -> None:
    """One ``--option`` per RunConfig field; every default is None meaning 'not given'."""
    group = parser.add_argument_group("run options (also settable in a --config YAML file)")
    for name, field in RunConfig.model_fields.items():
        if name in _SKIP_FIELDS or name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind, choices = _field_kind(field.annotation)
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description} (default: {default})"
        if kind is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            group.add_argument(
                flag,
                type=kind,
                choices=choices,
                default=None,
                help=help_text,
                metavar=None if choices else name.upper(),
            )
    group.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model builder argument, repeatable, VALUE parsed as YAML "
        "(e.g. --model-arg width_mult=0.5 --model-arg stem=imagenet)",
    )


def config_overrides(args: argparse.Namespace, skip: set[str] = frozenset()) -> dict[str, Any]:
    """The RunConfig fields given on the command line (None = not given)."""
    out = {
        name: getattr(args, name)
        for name in RunConfig.model_fields
        if name not in _SKIP_FIELDS and name not in skip and getattr(args, name, None) is not None
    }
    if args.model_arg:
        from cnnbench.cli import parse_key_values

        out["model_args"] = parse_key_values(args.model_arg, "--model-arg")
    return out


def _cmd_models(args: argparse.Namespace) -> int:
    from cnnbench.models import create_model, describe_model, list_models
    from cnnbench.profile import count_macs, count_params

    names = list_models(args.pattern)
    rows = []
    for name in names:
        model = create_model(name, num_classes=args.num_classes)
        rows.append((name, count_params(model), count_macs(model), describe_model(name)))
    if args.json:
        keys = ("name", "params", "macs", "about")
        print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
        return 0
    print(f"{'model':<22}{'params':>12}{'MACs (32x32)':>16}  about")
    for name, params, macs, about in rows:
        print(f"{name:<22}{params:>12,}{macs:>16,}  {about}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from cnnbench.train import load_config, train

    config = load_config(args.config, **config_overrides(args))
    command = "cnnbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    summary = train(
        config, runs_dir=args.runs_dir, resume=args.resume, progress=not args.quiet, command=command
    )
    run_dir = Path(args.runs_dir) / config.run_name()
    best = summary.get("best_val_acc")
    best_s = f"{best:.2%} (epoch {summary['best_epoch']})" if best is not None else "n/a"
    print(
        f"{summary['name']}: test accuracy {summary['test_acc']:.2%}, best validation {best_s}, "
        f"{summary['params']:,} params, {summary['train_time_s']:.0f} s training, "
        f"{summary['images_per_s']:.0f} img/s on {summary['device']}\nrun directory: {run_dir}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnbench.cli.bench import run_arg
    from cnnbench.train import evaluate_run

    # a folder or a .pt as given; otherwise a zoo name (or the one-line error)
    run = args.run if Path(args.run).exists() else run_arg(args.run, args.checkpoint).path
    result = evaluate_run(run, checkpoint=args.checkpoint, data_dir=args.data_dir,
                          device=args.device)  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    checkpoint = rundir.RunDir(run).checkpoint_path(args.checkpoint).name
    print(
        f"{result['run']} ({checkpoint}, epoch {result['epoch']}): "
        f"test accuracy {result['test_acc']:.2%}, loss {result['test_loss']:.4f}"
    )
    width = max(len(c) for c in result["classes"])
    print("\nper-class accuracy:")
    for name, acc in zip(result["classes"], result["per_class_acc"], strict=True):
        print(f"  {name:<{width}}  {acc:6.1%}")
    if len(result["classes"]) <= 20:
        print("\nconfusion matrix (rows: true class, columns: predicted):")
        for name, row in zip(result["classes"], result["confusion_matrix"], strict=True):
            print(f"  {name:<{width}} " + " ".join(f"{v:5d}" for v in row))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the models / train / evaluate sub-commands."""
    p = sub.add_parser(
        "models",
        help="list the registered architectures",
        description="List registered architectures with parameters and MACs.",
    )
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'mobile*'")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the head (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser(
        "train",
        help="train one model",
        description="Train one model on one dataset. Every option can also come from a YAML "
        "file (--config); options given on the command line win. The run is written to "
        f"RUNS_DIR/NAME: {rundir.CONFIG}, {rundir.METRICS}, checkpoints ({rundir.LAST}, "
        f"{rundir.BEST}) and {rundir.SUMMARY}. An existing run is never overwritten: use "
        "--resume or a new --name.",
    )
    p.add_argument("--config", type=Path, default=None, help="YAML file of run options")
    p.add_argument(
        "--runs-dir", default="runs", help="parent folder of run directories (default: runs)"
    )
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    add_config_options(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="test accuracy, per-class accuracy, confusion matrix",
        description="Evaluate a run's checkpoint on its dataset's full test split.",
    )
    p.add_argument(
        "run", type=Path, help="run directory, .pt checkpoint or zoo name (cnnbench zoo)"
    )
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which checkpoint of the run (default: best)",
    )
    p.add_argument("--data-dir", default=None, help="where the dataset is (default: as trained)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_evaluate)
