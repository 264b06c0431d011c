"""`cnnbench robustness`: accuracy under the CIFAR-10-C corruptions (what a real camera does to
a frame: noise, blur, weather, digital artefacts), per corruption and severity, and its mean."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from cnnbench.robustness.protocol import (
    CORRUPTIONS,
    DEFAULT_IMAGES,
    DEFAULT_SEED,
    GROUPS,
    ROBUSTNESS,
    ROBUSTNESS_FIGURES,
)

_DESCRIPTION = (
    "Measure trained models on the corruption benchmark of Hendrycks & Dietterich (ICLR 2019, "
    "CIFAR-10-C / CIFAR-100-C): 15 corruptions in four groups (noise: gaussian, shot, impulse; "
    "blur: defocus, glass, motion, zoom; weather: snow, frost, fog; digital: brightness, "
    "contrast, elastic, pixelate, JPEG) at five severities, applied to the test split. The "
    "corrupted images are generated here (the published files are not needed), seeded, and "
    "cached beside the decoded datasets ($CNNBENCH_CACHE), so a second model measures without "
    "generating again. Reports the accuracy of every corruption x severity cell with its "
    "standard error, the mean corruption accuracy (mCA), the group means, and the relative "
    "drop (clean - mCA) / clean, the clean accuracy taken on the same images. Writes "
    f"<run>/{ROBUSTNESS} and two figures under <run>/{ROBUSTNESS_FIGURES}/ (a heat map and one "
    "image through every corruption); a shipped zoo model is never written into (use --out). "
    f"By default a seeded, class-stratified subset of {DEFAULT_IMAGES:,} test images is "
    "measured (a few minutes for a small model on 2 CPU cores); --full takes all of them."
)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of integers, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part in GROUPS:
            out += GROUPS[part]
        elif part in CORRUPTIONS:
            out.append(part)
        else:
            raise argparse.ArgumentTypeError(
                f"unknown corruption or group {part!r}; groups: {', '.join(GROUPS)}; "
                f"corruptions: {', '.join(CORRUPTIONS)}"
            )
    return out


def _pct(v: float | None, se: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f} %" + ("" if se is None else f" ± {100 * se:.2f}")


def format_report(r: dict[str, Any]) -> str:
    """What `cnnbench robustness` prints for one run."""
    levels = [str(s) for s in r["severities"]]
    subset = "all" if r["full"] else f"a seeded subset (seed {r['subset_seed']}) of"
    lines = [f"{r['run']} ({r['model']}, {r['dataset']}): {r['images']:,} test images, "
             f"{subset} {r['test_images']:,}",
             f"  {'corruption':<20}" + "".join(f"{'s' + s:>7}" for s in levels) + f"{'mean':>8}"]  # fmt: skip
    for c, row in r["per_corruption"].items():
        cells = "".join(f"{100 * row['severity'][s]['acc']:>7.1f}" for s in levels)
        lines.append(f"  {c:<20}{cells}{100 * row['acc']:>8.1f}")
    lines.append(
        "  groups: " + ", ".join(f"{g} {100 * v['acc']:.1f}" for g, v in r["groups"].items())
    )
    lines.append(f"  clean {_pct(r['clean_acc'], r['clean_acc_se'])}, mCA "
                 f"{_pct(r['mca'], r['mca_se'])}, relative drop "
                 f"{_pct(r['relative_drop'], r['relative_drop_se'])}")  # fmt: skip
    t = r["timing"]
    lines.append(f"  {t['total_s']:.0f} s (generating {t['generate_s']:.0f} s, "
                 f"{r['cache']['hits']}/{r['cache']['hits'] + r['cache']['misses']} cells cached; "
                 f"evaluating {t['evaluate_s']:.0f} s), load {r['environment']['loadavg_start']}")  # fmt: skip
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    import json

    from cnnbench.cli import UserError
    from cnnbench.cli.bench import run_arg
    from cnnbench.robustness.measure import RobustnessError, measure_run

    runs = [run_arg(r) for r in args.runs]  # every name checked before anything is measured
    if args.out is not None and len(runs) > 1:
        raise UserError("--out takes one run (it is where that run's results go)")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    command = _command(args)
    reports = []
    for run in runs:
        print(f"measuring {run.path} ...", file=sys.stderr, flush=True)
        try:
            r = measure_run(
                run, images=None if args.full else args.images, seed=args.seed,
                data_dir=args.data_dir, corruptions=args.corruptions, severities=args.severities,
                batch_size=args.batch_size, device=args.device, out_dir=args.out,
                figures=not args.no_figures, use_cache=not args.no_cache,
                progress=None if args.quiet else _progress, command=command,
            )  # fmt: skip
        except (RobustnessError, ValueError) as e:
            raise UserError(str(e)) from e
        reports.append(r)
        if not args.json:
            print(format_report(r))
            print(f"  written: {r['written']}" if r["written"] else
                  f"  not written: {run.path} is a shipped zoo model (pass --out DIR)")  # fmt: skip
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces the measurement (rebuilt: main() may get argv)."""
    parts = ["cnnbench", "robustness", *args.runs]
    parts += ["--full"] if args.full else ["--images", str(args.images)]
    parts += ["--seed", str(args.seed)]
    if args.corruptions:
        parts += ["--corruptions", ",".join(args.corruptions)]
    if args.severities:
        parts += ["--severities", ",".join(map(str, args.severities))]
    return " ".join(shlex.quote(p) for p in parts)


def _progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `robustness` sub-command."""
    p = sub.add_parser(
        "robustness",
        help="accuracy under camera-like corruptions (CIFAR-10-C protocol): mCA and drop",
        description=_DESCRIPTION,
    )
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directory, its .pt checkpoint, or a zoo name (cnnbench zoo)")  # fmt: skip
    size = p.add_mutually_exclusive_group()
    size.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                      help=f"test images per cell, a seeded class-stratified subset (default "
                      f"{DEFAULT_IMAGES:,}; the standard error of mCA is then under 1 point)")  # fmt: skip
    size.add_argument("--full", action="store_true",
                      help="all test images (10,000 for CIFAR: the published protocol's size)")  # fmt: skip
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the subset and of every corruption (default {DEFAULT_SEED})")  # fmt: skip
    p.add_argument("--corruptions", type=_names, default=None,
                   help="comma list of corruptions or groups (noise, blur, weather, digital) "
                   "to measure (default: all 15; mCA is then the mean of those)")  # fmt: skip
    p.add_argument("--severities", type=_ints, default=None,
                   help="comma list of severities 1..5 (default: all)")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="where the dataset is (default: as trained)")
    p.add_argument("--device", default="cpu", help="device to evaluate on (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the evaluation (default: torch's)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=500, help="evaluation batch (default 500)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder for {ROBUSTNESS} and the figures (default: the run directory; "
                   "needed for a zoo model)")  # fmt: skip
    p.add_argument("--no-figures", action="store_true", help="write no figures")
    p.add_argument("--no-cache", action="store_true",
                   help="generate the corrupted images again and cache nothing")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress on stderr")
    p.set_defaults(func=_cmd)
