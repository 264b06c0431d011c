"""`cnnbench bench`, `cnnbench export`, `cnnbench predict`, `cnnbench pick` (fast response).

The work is in ``cnnbench.bench`` (measuring), ``cnnbench.export`` and ``cnnbench.inference``;
this module parses options, prints, and maps ``BenchError`` and ``RunDirError`` to the CLI's
one-line user error (exit 2). A run is named as ``rundir.resolve`` reads it: a run folder,
a ``.pt`` file's folder, or a shipped zoo model's name. Exit 1 means the command ran but
the answer is "no": an exported model outside the accuracy tolerance, an image that failed,
no model within the latency budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cnnbench.cli import UserError
from cnnbench.rundir import RunDir


def _threads(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected thread counts like 1,4 - got {text!r}"
        ) from None
    if not out or any(t < 1 for t in out):
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return out


def _user(fn: Any) -> Any:
    """Run a command, turning ``BenchError`` (``ExportError`` and ``ModelLoadError`` are ones)
    and ``RunDirError`` into the CLI's ``UserError``."""

    def wrapped(args: argparse.Namespace) -> int:
        from cnnbench.bench.errors import BenchError
        from cnnbench.rundir import RunDirError

        try:
            return fn(args)
        except (BenchError, RunDirError) as e:
            raise UserError(str(e)) from e

    return wrapped


def run_arg(text: str | Path, checkpoint: str = "best") -> RunDir:
    """The run a command line names: a folder, a ``.pt`` file's folder or a zoo name
    (``rundir.resolve``); anything else is the one-line user error. A ``.pt`` file must be
    the run's ``checkpoint`` one, which is what the command reads."""
    from cnnbench import rundir, zoo

    try:
        run = rundir.resolve(text)
    except rundir.RunDirError:
        names = ", ".join(zoo.names()) or "none shipped"
        raise UserError(
            f"{text} is not a run directory, a .pt checkpoint or a zoo model (zoo: {names})"
        ) from None
    wanted = run.checkpoint_path(checkpoint)
    if Path(text).suffix == ".pt" and Path(text).name != wanted.name:
        raise UserError(f"{text}: this command reads the run's {wanted.name}; name the run folder")
    return run


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.cost:
        return _cost(args)
    if args.target is None:
        raise UserError("name a model or a run directory to measure (or use --cost)")
    from cnnbench.bench.latency import QUICK_SETTINGS, format_report, measure, write_report

    kw: dict[str, Any] = dict(QUICK_SETTINGS) if args.quick else {}
    given = {
        "backends": args.backends,
        "threads": args.threads,
        "iters": args.iters,
        "warmup": args.warmup,
        "max_seconds": args.max_seconds,
    }
    kw.update({k: v for k, v in given.items() if v is not None})
    if args.batch is not None:
        kw["throughput_batch"] = args.batch or None
    kw.setdefault("throughput_batch", 64)
    report = measure(
        args.target,
        device=args.device,
        num_classes=args.num_classes,
        image_size=args.image_size,
        data_dir=args.data_dir,
        calibration_size=args.calibration_images,
        log=_log,
        **kw,
    )
    report["quick"] = bool(args.quick)
    print(format_report(report))
    if report["kind"] == "run":
        _write_run_bench(report, run_arg(args.target))
    if args.json:
        write_report(report, args.json)
        print(f"written: {args.json}")
    return 1 if report["errors"] and not report["results"] else 0


def _write_run_bench(report: dict[str, Any], run: RunDir) -> None:
    """``<run>/bench.json``, except in a shipped zoo model (its figures are part of its card)."""
    from cnnbench.bench.latency import write_report

    if run.zoo_card() is not None:
        print(f"not written: {run.bench_path} belongs to a shipped zoo model (use --json)")
        return
    write_report(report, run.bench_path)
    print(f"written: {run.bench_path}")


def _cost(args: argparse.Namespace) -> int:
    from cnnbench.bench.cost import format_cost, separable_cost
    from cnnbench.models import list_models

    names = args.model or ([args.target] if args.target else ["mobilenetv2", "mobilenetv2_reduced"])
    results = []
    for name in names:
        if name not in list_models():
            raise UserError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
        cost = separable_cost(name, (3, args.image_size, args.image_size))
        if not cost["blocks"]:
            raise UserError(f"{name} has no depthwise-separable (inverted-residual) blocks")
        results.append(cost)
        print(format_cost(cost), end="\n\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"written: {args.json}")
    return 0 if all(c["totals"]["all_exact"] for c in results) else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from cnnbench.export import export_run

    if args.format != "onnx":
        raise UserError(f"unsupported format {args.format!r} (only onnx)")
    run = run_arg(args.run, args.checkpoint)
    if args.out is None and run.zoo_card() is not None:
        raise UserError(f"{args.run} is a shipped zoo model: choose where to export with --out")
    res = export_run(
        run,
        out_dir=args.out,
        int8=args.int8,
        force=args.force,
        tolerance=args.tolerance,
        data_dir=args.data_dir,
        test_subset=args.test_subset,
        calibration_size=args.calibration_images,
        opset=args.opset,
        checkpoint=args.checkpoint,
        log=_log,
    )
    print(f"test accuracy on {res['test_images']:,} images - PyTorch: {res['torch_acc']:.2%}")
    for m in res["models"]:
        print(
            f"  {m['precision']:<5} {m['path']}  ({m['bytes'] / 1e6:.2f} MB): "
            f"ONNX Runtime {m['onnx_acc']:.2%} ({-m['drop_points']:+.2f} points, "
            f"same class as PyTorch on {m['agreement']:.2%}); sidecar {m['sidecar']}"
        )
    if not res["ok"]:
        bad = [m["precision"] for m in res["models"] if not m["ok"]]
        print(
            f"cnnbench export: {' and '.join(bad)} accuracy is more than "
            f"{args.tolerance:g} points below PyTorch (--tolerance); the files are kept",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import warnings

    from PIL import Image

    from cnnbench.inference import Predictor, expand_inputs

    # load_image enforces its own, lower pixel limit before decoding; Pillow's warning for
    # images between its limits would only repeat that.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    if args.top_k < 1:
        raise UserError("--top-k must be >= 1")
    exact_file = Path(args.model).suffix in (".onnx", ".pt")
    source = args.model if exact_file else run_arg(args.model)
    predictor = Predictor.load(source, backend=args.backend, threads=args.threads)
    files = expand_inputs(args.images)
    if not files:
        raise UserError("no image files found in the given folder(s)")
    rows = [_classify(predictor, f, args.top_k, quiet=args.json) for f in files]
    failed = sum("error" in r for r in rows)
    if args.json:
        out = {"model": predictor.source, "backend": predictor.backend, "results": rows}
        print(json.dumps(out, indent=2))
    else:
        tail = f"; {failed} failed" if failed else ""
        print(
            f"{len(files) - failed} of {len(files)} file(s) classified with "
            f"{predictor.backend} ({predictor.source}){tail}"
        )
    return 1 if failed else 0


def _classify(predictor: Any, f: Path, top_k: int, quiet: bool) -> dict[str, Any]:
    """One file's row of `cnnbench predict` (its top-k, or its error), printed unless quiet."""
    import numpy as np

    from cnnbench.inference import ImageError, load_image

    t0 = time.perf_counter()
    try:
        x = load_image(f, predictor.image_size)
    except ImageError as e:
        if not quiet:
            print(f"{f}: error: {e}")
        return {"file": str(f), "error": str(e)}
    t1 = time.perf_counter()
    probs = predictor.predict(x[np.newaxis])
    t2 = time.perf_counter()
    top = predictor.top_k(probs, top_k)[0]
    if not quiet:
        print(
            f"{f}: {top[0][0]} ({top[0][1]:.1%})  [{(t2 - t0) * 1e3:.1f} ms: decode "
            f"{(t1 - t0) * 1e3:.1f}, inference {(t2 - t1) * 1e3:.1f}]"
        )
        for rank, (label, p) in enumerate(top, 1):
            print(f"  {rank}. {label:<20} {p:7.2%}")
    return {
        "file": str(f),
        "top_k": [{"label": c, "prob": p} for c, p in top],
        "decode_ms": (t1 - t0) * 1e3,
        "inference_ms": (t2 - t1) * 1e3,
    }


def _cmd_pick(args: argparse.Namespace) -> int:
    from cnnbench.bench.pick import format_pick, pick

    res = pick(
        args.study,
        args.budget_ms,
        metric=args.metric,
        device=args.device,
        threads=args.threads,
        zoo=args.zoo,
        min_corrupted_acc=args.min_corrupted_acc,
    )
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(format_pick(res))
    return 0 if res["choice"] is not None else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the bench / export / predict / pick sub-commands."""
    _add_bench(sub)
    _add_export(sub)
    _add_predict(sub)
    _add_pick(sub)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    """`cnnbench bench`: latency per backend, or the --cost analysis."""
    p = sub.add_parser(
        "bench",
        help="latency, throughput, size and memory per backend; --cost analysis",
        description="Measure a model (a registered name: untrained weights, fine for timing) "
        "or a trained run: parameters, MACs, size on disk, peak memory of one inference, "
        "batch-1 latency p50/p90/p99 and throughput, on PyTorch eager, TorchScript, ONNX "
        "Runtime fp32 and int8 (each in a fresh process), at fixed thread counts; on a GPU "
        "also eager fp32 and bf16 + channels_last. A run directory gets <run>/bench.json. "
        "With --cost: the depthwise-separable cost analysis of MobileNetV2 blocks instead.",
    )
    p.add_argument(
        "target",
        nargs="?",
        default=None,
        help="model name, run directory, .pt checkpoint or zoo model name",
    )
    _add_timing_options(p)
    p.add_argument(
        "--image-size", type=int, default=32, help="input size of a model name (default 32)"
    )
    p.add_argument(
        "--num-classes", type=int, default=10, help="classes of a model name (default 10)"
    )
    p.add_argument("--data-dir", default=None, help="where the int8 calibration data is")
    p.add_argument(
        "--calibration-images",
        type=int,
        default=300,
        help="training images to calibrate int8 with (default 300)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the report to this file")
    p.add_argument(
        "--cost",
        action="store_true",
        help="per-block depthwise-separable cost analysis (no timing)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="model for --cost, repeatable (default: mobilenetv2 and mobilenetv2_reduced)",
    )
    p.set_defaults(func=_user(_cmd_bench))


def _add_timing_options(p: argparse.ArgumentParser) -> None:
    """What `cnnbench bench` measures and for how long."""
    p.add_argument(
        "--backends",
        default=None,
        help="comma list of eager, torchscript, onnxruntime, onnxruntime-int8 "
        "(aliases torch, jit, ort, int8; default: all)",
    )
    p.add_argument(
        "--threads",
        type=_threads,
        default=None,
        help="comma list of CPU thread counts (default: 1 and all cores)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CPU, plus the GPU when CUDA is available (default: auto)",
    )
    p.add_argument("--iters", type=int, default=None, help="timed batch-1 calls (default 1000)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 50)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="stop timing a backend after this many seconds (default 10)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="batch size of the throughput measurement, 0 to skip (default 64)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="threads=1, eager + onnxruntime, 300 calls or 2 s each, no throughput",
    )


def _add_export(sub: argparse._SubParsersAction) -> None:
    """`cnnbench export`: ONNX (+ int8) files with sidecars, checked for accuracy."""
    p = sub.add_parser(
        "export",
        help="export a run to one ONNX file (+ int8) with a JSON sidecar",
        description="Write <out>/model.onnx (and with --int8 model.int8.onnx: static QDQ "
        "quantisation calibrated on training images), each with a .json sidecar (labels, "
        "input size, mean/std, model, dataset, accuracies); then evaluate each on the test "
        "split with ONNX Runtime next to PyTorch. Exit 1 if one is more than --tolerance "
        "points less accurate (the files are kept). Existing files are never overwritten "
        "without --force.",
    )
    p.add_argument("run", type=Path, help="run directory (or a zoo model name)")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format (onnx)")
    p.add_argument("--int8", action="store_true", help="also write a static int8 model")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <run>/export)")
    p.add_argument("--force", action="store_true", help="overwrite existing exported files")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="allowed accuracy drop vs PyTorch, in points (default 1.0)",
    )
    p.add_argument(
        "--test-subset",
        type=int,
        default=None,
        help="evaluate on a seeded subset of this many test images (default: all)",
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=300,
        help="training images to calibrate int8 with (default 300)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which checkpoint of the run (default: best)",
    )
    p.add_argument("--data-dir", default=None, help="where the dataset is (default: as trained)")
    p.set_defaults(func=_user(_cmd_export))


def _add_predict(sub: argparse._SubParsersAction) -> None:
    """`cnnbench predict`: classify image files."""
    p = sub.add_parser(
        "predict",
        help="classify image files with an exported model or a run",
        description="Classify image files of any size and mode (converted to RGB, resized "
        "bilinearly to the model's input size). A folder gives its image files. A file that "
        "cannot be used (unreadable, empty, not an image, truncated, over 50 MP or 100 MiB) "
        "gets a one-line error and the others still run; exit 1 if any failed.",
    )
    p.add_argument(
        "model",
        help="an exported .onnx file (sidecar .json next to it), a .pt checkpoint, a run "
        "directory or a zoo model name",
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument(
        "--backend",
        choices=("auto", "onnxruntime", "torch"),
        default="auto",
        help="auto: onnxruntime for .onnx, torch for a run directory",
    )
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_user(_cmd_predict))


def _add_pick(sub: argparse._SubParsersAction) -> None:
    """`cnnbench pick`: the most accurate run of a study within a latency budget."""
    p = sub.add_parser(
        "pick",
        help="the most accurate model of a study within a latency budget",
        description="Among the runs under STUDY (folders with summary.json) and the zoo's "
        "models of the same dataset, name the one with the highest test accuracy whose "
        "measured latency (bench.json, fastest backend, batch 1) fits --budget-ms; else the "
        "closest one. Runs without bench.json are listed as not measured; runs that did not "
        "learn are skipped. Exit 1 if none fits.",
    )
    p.add_argument("study", type=Path, help="study folder (runs in sub-folders)")
    p.add_argument("--budget-ms", type=float, required=True, help="latency budget in ms")
    p.add_argument(
        "--metric",
        choices=("p50", "p90", "p99", "mean"),
        default="p99",
        help="latency statistic to compare (default p99)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device (default cpu)")
    p.add_argument(
        "--threads", type=int, default=None, help="only results at this thread count (default: any)"
    )
    p.add_argument(
        "--zoo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let the shipped zoo models of the study's dataset compete, marked zoo (default: on)",
    )
    p.add_argument(
        "--min-corrupted-acc",
        type=float,
        default=None,
        metavar="FRACTION",
        help="only models whose mean corruption accuracy (mCA of `cnnbench robustness`, "
        "CIFAR-10-C protocol) is at least this, e.g. 0.7 for 70 %%; models never measured "
        "for robustness are then skipped (default: no minimum)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_user(_cmd_pick))
