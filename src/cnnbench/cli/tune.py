"""`cnnbench tune`: hyper-parameter search with Optuna (see ``cnnbench.tune``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_tune(args: argparse.Namespace) -> int:
    from cnnbench.tune import load_search, run_search

    spec = load_search(args.search)
    if args.trials is not None:
        spec.trials = args.trials
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    if args.threads:
        overrides["threads"] = args.threads
    result = run_search(
        spec,
        runs_dir=args.runs_dir,
        storage=args.storage,
        progress=not args.quiet,
        overrides=overrides,
    )
    best = result["best"]
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items()
    )
    print(
        f"{result['name']}: {result['complete']} complete, {result['pruned']} pruned, "
        f"{result['failed']} failed trials\n"
        f"best: trial {best['number']} ({best['run']}): validation accuracy {best['value']:.2%}"
        f", test accuracy {best['test_acc']:.2%}\n  {params}\n"
        f"storage: {result['storage']}\n"
        f"report: cnnbench report {Path(args.runs_dir) / result['name']}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the tune sub-command."""
    p = sub.add_parser(
        "tune",
        help="hyper-parameter search (Optuna: TPE + median pruning)",
        description="Search hyper-parameters with Optuna: a TPE sampler proposes each trial, "
        "a median pruner stops trials whose validation accuracy falls behind. Trials are "
        "ordinary runs under RUNS_DIR/NAME/trial-NNNN. The search is stored in SQLite by "
        "default (resumable: run the command again to continue); pass any database URL "
        "Optuna supports (e.g. postgresql://user@host/db) with --storage to run many workers "
        "on many machines against one search.",
    )
    p.add_argument("search", type=Path, help="search YAML file (see studies/tune-quick.yaml)")
    p.add_argument("--runs-dir", default="runs", help="parent folder of runs (default: runs)")
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: sqlite:///RUNS_DIR/NAME/optuna.db)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help="finished trials to reach, over all workers (default: from the file)",
    )
    p.add_argument("--data-dir", default=None, help="where the dataset is")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per trial")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_tune)
