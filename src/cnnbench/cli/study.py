"""`cnnbench study` (run a YAML grid of runs, resumably, then report) and `cnnbench report`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any


def _print_plan(study: Any, runs_dir: str) -> None:
    from cnnbench.rundir import is_complete
    from cnnbench.study import study_dir

    directory = study_dir(study, runs_dir)
    done = 0
    print(
        f"study {study.name}: {len(study.runs)} runs in {directory}"
        + (f" (varying {', '.join(study.varied)})" if study.varied else "")
    )
    width = max(len(c.run_name()) for c in study.runs)
    for c in study.runs:
        run_dir = directory / c.run_name()
        if is_complete(run_dir):
            state, done = "complete", done + 1
        elif run_dir.exists():
            state = "resume"
        else:
            state = "new"
        subset = f", {c.train_subset:,} images" if c.train_subset else ""
        print(f"  {state:<9} {c.run_name():<{width}}  {c.dataset}, {_length(c)}{subset}")
    print(f"{done} complete, {len(study.runs) - done} to train")


def _length(config: Any) -> str:
    """How long a run trains: its budget (the trainer turns it into epochs), else its epochs."""
    if config.budget_minutes is not None:
        return f"budget {config.budget_minutes:g} min"
    return f"{config.epochs} epochs"


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this study (rebuilt: main() may get argv directly)."""
    parts = ["cnnbench", "study", str(args.study)]
    if args.runs_dir != "runs":
        parts += ["--runs-dir", args.runs_dir]
    for item in args.set:
        parts += ["--set", item]
    if args.data_dir:
        parts += ["--data-dir", args.data_dir]
    return " ".join(shlex.quote(p) for p in parts)


def _cmd_study(args: argparse.Namespace) -> int:
    from cnnbench.cli import UserError, parse_key_values
    from cnnbench.report import ReportError, write_report
    from cnnbench.study import load_study, run_study

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    overrides = parse_key_values(args.set, "--set", underscores=True)
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    study = load_study(args.study, overrides)
    if args.dry_run:
        _print_plan(study, args.runs_dir)
        return 0
    command = _command(args)
    result = run_study(
        study,
        runs_dir=args.runs_dir,
        workers=args.workers,
        progress=not args.quiet,
        command=command,
        bench=not args.no_bench,
        executor=args.executor,
        ray_address=args.ray_address,
        gpus_per_run=args.gpus_per_run,
    )
    print(
        f"study {study.name}: {len(result.trained)} trained, {len(result.skipped)} already "
        f"complete, {len(result.failed)} failed"
    )
    if not args.no_report:
        try:
            paths = write_report(result.study_dir)
            print(f"report: {paths['html']}\n        {paths['markdown']}")
        except ReportError as e:
            print(f"no report: {e}", file=sys.stderr)
    if result.failed:
        for name, err in result.failed.items():
            print(f"failed: {name}: {err}", file=sys.stderr)
        print(
            "fix the cause and run the same command again: complete runs are kept", file=sys.stderr
        )
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from cnnbench.cli import UserError
    from cnnbench.report import ReportError, write_report

    try:
        paths = write_report(args.study_dir, out_dir=args.out)
    except ReportError as e:
        raise UserError(str(e)) from None
    print(f"report: {paths['html']}\n        {paths['markdown']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the study / report sub-commands."""
    _add_study(sub)
    _add_report(sub)


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="run a YAML grid of runs, then write its report",
        description="Expand a study file (base config + grid and/or explicit runs) into runs, "
        "validate all of them, train each into RUNS_DIR/<study>/<run>/, skipping complete runs "
        "and resuming interrupted ones (so the same command continues a killed study), then "
        "write RUNS_DIR/<study>/report/report.html and report.md.",
    )
    p.add_argument("study", type=Path, help="study YAML file, e.g. studies/quick.yaml")
    p.add_argument(
        "--runs-dir", default="runs", help="parent folder of study folders (default: runs)"
    )
    _add_executor_options(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and list the runs (new / resume / complete), train nothing",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a run option in every run, repeatable, VALUE parsed as YAML "
        "(e.g. --set device=cpu --set epochs=1); changes run names if it changes a "
        "varied setting",
    )
    p.add_argument("--data-dir", default=None, help="where the datasets are (every run)")
    p.add_argument("--no-report", action="store_true", help="train only; no report at the end")
    p.add_argument(
        "--no-bench",
        action="store_true",
        help="do not measure batch-1 CPU latency after each run (cnnbench.bench)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=_cmd_study)


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    """Where the runs train: this process, --workers processes, or Ray tasks."""
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runs trained at once, in separate processes, each with cores // N "
        f"threads (default 1: in this process; this machine has {os.cpu_count()} cores)",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: in this process or --workers processes; ray: one Ray task per "
        "run, on this machine or the cluster at --ray-address (pip install "
        "'cnnbench[ray]'; --runs-dir must be shared by every node)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join, e.g. auto or ray://head:10001 (default: start a local Ray)",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="GPUs Ray reserves for each run (fractions share a GPU; default 0)",
    )


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the HTML + Markdown report of a study folder",
        description="Read RUNS_DIR/<study>/ (study.yaml and its run folders) and write "
        "report/report.html (one self-contained file, figures embedded) and report/report.md "
        "(figures as PNG files in report/figures/).",
    )
    p.add_argument("study_dir", type=Path, help="study folder, e.g. runs/quick")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: STUDY_DIR/report)"
    )
    p.set_defaults(func=_cmd_report)
