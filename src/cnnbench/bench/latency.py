"""`cnnbench bench`: latency, throughput, size and peak memory of a model on several backends.

    report = measure("mobilenetv2_reduced", threads=[1])   # untrained weights: fine for timing
    report = measure("runs/mnv2r")                         # a trained run
    measure_run("runs/mnv2r", quick=True)                  # writes runs/mnv2r/bench.json
    latency_summary("runs/mnv2r")  # {"p50_ms", "p99_ms", "backend", "threads", "device"}

Each (backend, thread count) is measured in a fresh worker process (``_worker``), one after
the other, never two at once. Latency is batch 1: ``warmup`` untimed calls, then up to
``iters`` timed single-image calls (fewer if ``max_seconds`` runs out; the count is
reported), p50 / p90 / p99. Throughput is images/s from the median time of a
``throughput_batch`` call. Memory is the resident-memory peak added by the first inference
of one image in the fresh process (CPU), or ``torch.cuda.max_memory_allocated`` (GPU). Size is
the serialised state dict (eager), the frozen TorchScript module, or the ONNX file.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnbench.bench._worker import run_worker
from cnnbench.bench.errors import BenchError
from cnnbench.fileio import write_json_atomic

__all__ = [
    "BACKENDS",
    "QUICK_BACKENDS",
    "default_threads",
    "fastest",
    "format_report",
    "latency_summary",
    "measure",
    "measure_run",
    "parse_backends",
]

BACKENDS = ("eager", "torchscript", "onnxruntime", "onnxruntime-int8")
# The quick subset: the PyTorch baseline and the fastest fp32 path we measured on CPUs at
# batch 1 (ONNX Runtime; see benchmarks/latency.py). Int8 needs calibration data: not quick.
QUICK_BACKENDS = ("eager", "onnxruntime")
# measure_run(quick=True) and `cnnbench bench --quick`: a few seconds per backend.
QUICK_SETTINGS: dict[str, Any] = {"backends": QUICK_BACKENDS, "threads": [1], "iters": 300,
                                  "warmup": 20, "max_seconds": 2.0, "throughput_batch": None}  # fmt: skip
_ALIASES = {"torch": "eager", "pytorch": "eager", "jit": "torchscript", "ts": "torchscript",
            "ort": "onnxruntime", "onnx": "onnxruntime", "int8": "onnxruntime-int8",
            "ort-int8": "onnxruntime-int8"}  # fmt: skip
# GPU variants of the eager backend: (label, autocast dtype, channels_last).
GPU_VARIANTS = (("eager", None, False), ("eager-bf16-channels_last", "bf16", True))
BENCH_FORMAT = 1


def parse_backends(text: str | Sequence[str]) -> list[str]:
    """Backend names from "eager,ort,int8" (aliases allowed), in the canonical order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            return list(BACKENDS)
        name = _ALIASES.get(name, name)
        if name not in BACKENDS:
            raise BenchError(f"unknown backend {raw!r}; choose from {', '.join(BACKENDS)} (or all)")
        out.append(name)
    if not out:
        raise BenchError("no backend given")
    return [b for b in BACKENDS if b in out]


def default_threads() -> list[int]:
    """1 and every core this process may run on (one entry if that is 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return sorted({1, cores})


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _resolve(target: str | Path, num_classes: int, image_size: int) -> dict[str, Any]:
    """The model to measure: a run directory, a .pt checkpoint, or a registered model name."""
    import torch

    from cnnbench.models import create_model, list_models
    from cnnbench.train import CheckpointError, model_from_checkpoint

    path = Path(target)
    if path.is_dir() or path.suffix == ".pt":
        try:
            model, ckpt = model_from_checkpoint(path)
        except CheckpointError as e:
            raise BenchError(str(e)) from e
        cfg = ckpt.get("config", {})
        size = int(cfg.get("image_size", 32))
        return {"kind": "run" if path.is_dir() else "checkpoint", "model": model,
                "spec": ckpt["model_spec"], "input_size": [3, size, size],
                "run_dir": path if path.is_dir() else None, "config": cfg,
                "mean": ckpt.get("mean"), "std": ckpt.get("std"),
                "weights": f"trained ({path}, epoch {ckpt.get('epoch')})"}  # fmt: skip
    name = str(target)
    if name not in list_models():
        raise BenchError(
            f"{name!r} is neither a run directory nor a model; models: {', '.join(list_models())}"
        )
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes).eval()
    return {"kind": "model", "model": model, "spec": dict(model.cnnbench_spec),
            "input_size": [3, image_size, image_size], "run_dir": None, "config": {},
            "mean": None, "std": None, "weights": "untrained (seed 0): fine for timing"}  # fmt: skip


def _calibration(info: dict[str, Any], n: int, data_dir: str | None) -> tuple[Any, Any, Any, str]:
    """(uint8 images, mean, std, description) to calibrate int8: real data when there is any."""
    import numpy as np

    from cnnbench.bench.export import calibration_images
    from cnnbench.data import DataError, load_dataset

    cfg = info["config"]
    dataset = cfg.get("dataset", "cifar10")
    size = info["input_size"][1]
    try:
        ds = load_dataset(dataset, data_dir=data_dir or cfg.get("data_dir"), image_size=size,
                          label_kind=cfg.get("label_kind", "fine"), show_progress=False)  # fmt: skip
        x = calibration_images(ds.x_train, ds.y_train, n)
        mean, std = info["mean"] or ds.mean_std()[0], info["std"] or ds.mean_std()[1]
        return x, mean, std, f"{len(x)} {dataset} training images"
    except DataError as e:
        # Timing an untrained model does not depend on the calibration values; say so.
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(n, *info["input_size"]), dtype=np.uint8)
        mean, std = info["mean"] or (0.5, 0.5, 0.5), info["std"] or (0.25, 0.25, 0.25)
        return x, mean, std, f"{n} random images (no real data: {e})"


def measure(
    target: str | Path,
    *,
    backends: Sequence[str] = BACKENDS,
    threads: Sequence[int] | None = None,
    device: str = "auto",
    iters: int = 1000,
    warmup: int = 50,
    max_seconds: float = 10.0,
    throughput_batch: int | None = 64,
    throughput_seconds: float = 5.0,
    num_classes: int = 10,
    image_size: int = 32,
    data_dir: str | None = None,
    calibration_size: int = 300,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure ``target`` (run dir, .pt or model name) on every backend and thread count.

    ``device``: "cpu", "cuda" or "auto" (CPU, plus the GPU variants when CUDA is available).
    A GPU asked for but absent is recorded under ``skipped``, as is a backend that fails
    (under ``errors``, with the worker's message); the other measurements still run.
    """
    import torch

    from cnnbench.env import environment
    from cnnbench.profile import count_macs, count_params

    say = log or (lambda _msg: None)
    if device not in ("auto", "cpu", "cuda"):
        raise BenchError(f"device must be auto, cpu or cuda, got {device!r}")
    backends = parse_backends(backends)
    threads = sorted(set(threads)) if threads else default_threads()
    if any(t < 1 for t in threads):
        raise BenchError("thread counts must be >= 1")
    t_start = time.perf_counter()
    info = _resolve(target, num_classes, image_size)
    model, input_size = info["model"], info["input_size"]
    report: dict[str, Any] = {
        "format": BENCH_FORMAT,
        "target": str(target),
        "kind": info["kind"],
        "model": info["spec"]["name"],
        "model_spec": info["spec"],
        "weights": info["weights"],
        "input_size": input_size,
        "params": count_params(model),
        "macs": count_macs(model, tuple(input_size)),
        "settings": {
            "backends": backends,
            "threads": threads,
            "iters": iters,
            "warmup": warmup,
            "max_seconds": max_seconds,
            "throughput_batch": throughput_batch,
            "device": device,
        },
        "environment": {**environment("cpu"), "loadavg_start": _loadavg()},
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results": [],
        "skipped": [],
        "errors": [],
    }
    common = {"input_size": input_size, "warmup": warmup, "iters": iters,
              "max_seconds": max_seconds, "throughput_batch": throughput_batch,
              "throughput_seconds": throughput_seconds}  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="cnnbench-bench-") as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save({"model": model.state_dict(), "model_spec": info["spec"]}, weights)
        files: dict[str, Path] = {}
        cpu = device != "cuda"
        if cpu and ("onnxruntime" in backends or "onnxruntime-int8" in backends):
            from cnnbench.bench.export import export_onnx

            say("exporting to ONNX ...")
            try:
                files["onnxruntime"] = export_onnx(model, Path(tmp) / "model.onnx",
                                                   input_size=input_size)  # fmt: skip
            except Exception as e:  # the torch backends are still worth measuring
                failed = f"ONNX export failed: {type(e).__name__}: {e}"
                report["errors"] += [{"backend": b, "device": "cpu", "threads": 0, "error": failed}
                                     for b in ("onnxruntime", "onnxruntime-int8") if b in backends]  # fmt: skip
        if "onnxruntime" in files and "onnxruntime-int8" in backends:
            from cnnbench.bench.export import quantize_int8

            x, mean, std, about = _calibration(info, calibration_size, data_dir)
            say(f"quantising to int8 (calibration: {about}) ...")
            try:
                q = quantize_int8(files["onnxruntime"], Path(tmp) / "model.int8.onnx", x, mean, std)
                report["quantization"] = {**q, "calibration_data": about}
                files["onnxruntime-int8"] = Path(tmp) / "model.int8.onnx"
            except Exception as e:
                report["errors"].append({"backend": "onnxruntime-int8", "device": "cpu",
                                         "threads": 0, "error": f"quantisation failed: {e}"})  # fmt: skip

        jobs: list[dict[str, Any]] = []
        if cpu:  # device="cuda": the GPU variants only
            runnable = [b for b in backends if b in files or not b.startswith("onnxruntime")]
            for n in threads:
                for b in runnable:
                    job = {**common, "backend": b, "device": "cpu", "threads": n}
                    if b in files:
                        job["onnx_path"] = str(files[b])
                    else:
                        job["weights"] = str(weights)
                    jobs.append(job)
        if device in ("auto", "cuda"):
            if torch.cuda.is_available():
                for label, amp, cl in GPU_VARIANTS:
                    jobs.append({**common, "backend": "eager", "label": label, "device": "cuda",
                                 "threads": 1, "amp": amp, "channels_last": cl,
                                 "weights": str(weights)})  # fmt: skip
            else:
                reason = "CUDA is not available (torch.cuda.is_available() is False)"
                report["skipped"] += [{"backend": label, "device": "cuda", "reason": reason}
                                      for label, _, _ in GPU_VARIANTS]  # fmt: skip
        for job in jobs:
            label = job.pop("label", job["backend"])
            say(f"measuring {label} on {job['device']}, {job['threads']} thread(s) ...")
            res = run_worker(job)
            if "error" in res:
                report["errors"].append({"backend": label, "device": job["device"],
                                         "threads": job["threads"], "error": res["error"]})  # fmt: skip
                continue
            res["backend"] = label
            report["results"].append(res)
    report["environment"]["loadavg_end"] = _loadavg()
    report["elapsed_s"] = time.perf_counter() - t_start
    return report


def measure_run(run_dir: str | Path, quick: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Measure a trained run and write ``<run>/bench.json`` (replacing an older one).

    ``quick=True``: threads=1, eager + ONNX Runtime fp32, up to 300 calls or ~2 s per backend,
    no throughput; under 20 s for lenet5 / mobilenetv2_reduced. ``quick=False``: every
    backend and thread count of ``measure``. Other keywords go to ``measure``.
    """
    run = Path(run_dir)
    if not (run / "best.pt").is_file() and not (run / "last.pt").is_file():
        raise BenchError(f"{run} has no checkpoint (best.pt): not a finished run")
    if quick:
        kwargs = {**QUICK_SETTINGS, "device": "cpu", **kwargs}
    report = measure(run, **kwargs)
    report["quick"] = quick
    write_report(report, run / "bench.json")
    return report


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Write a report as JSON atomically (a reader never sees half a file)."""
    write_json_atomic(path, report)


def fastest(
    report: dict[str, Any],
    *,
    metric: str = "p50",
    device: str | None = None,
    threads: int | None = None,
) -> dict[str, Any] | None:
    """The batch-1 result with the lowest ``metric`` (p50, p90, p99, mean), optionally filtered."""
    key = f"{metric}_ms"
    rows = [
        r for r in report.get("results", [])
        if r.get("batch", 1) == 1 and key in r
        and (device is None or r.get("device") == device)
        and (threads is None or r.get("threads") == threads)
    ]  # fmt: skip
    return min(rows, key=lambda r: r[key]) if rows else None


def latency_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """{"p50_ms", "p99_ms", "backend", "threads", "device"} of the fastest (by p50) batch-1
    result in ``<run>/bench.json``, preferring the CPU; None without a readable bench.json."""
    path = Path(run_dir) / "bench.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    best = fastest(report, device="cpu") or fastest(report)
    if best is None:
        return None
    return {k: best[k] for k in ("p50_ms", "p99_ms", "backend", "threads", "device")}


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}"


def format_report(report: dict[str, Any]) -> str:
    """The terminal table of a report, with where and under what load it was measured."""
    env = report["environment"]
    lines = [
        f"{report['model']} - {report['weights']}",
        f"{report['params']:,} parameters, {report['macs'] / 1e6:,.1f} M MACs per image "
        f"(input {'x'.join(map(str, report['input_size']))})",
        f"device: {env['device_name']}; torch {env['versions'].get('torch')}, onnxruntime "
        f"{env['versions'].get('onnxruntime')}; load average {env.get('loadavg_start')} -> "
        f"{env.get('loadavg_end')} (1/5/15 min; other processes share the CPU)",
    ]
    tb = report["settings"].get("throughput_batch")
    head = (f"{'backend':<26}{'device':>6}{'thr':>4}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
            f"{'calls':>7}{f'img/s@{tb}' if tb else 'img/s':>11}{'size MB':>9}{'inf MB':>8}"
            f"{'mem MB':>8}")  # fmt: skip
    lines += ["", head, "-" * len(head)]
    for r in report["results"]:
        tput = r.get("throughput", {}).get("images_per_s")
        lines.append(
            f"{r['backend']:<26}{r['device']:>6}{r['threads']:>4}{r['p50_ms']:>9.3f}"
            f"{r['p90_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['iters']:>7}"
            f"{'-' if tput is None else f'{tput:,.0f}':>11}{_mb(r.get('size_bytes')):>9}"
            f"{_mb(r['memory'].get('peak_delta_bytes')):>8}"
            f"{_mb(r['memory'].get('footprint_bytes')):>8}"
        )
    for s in report["skipped"]:
        lines.append(f"{s['backend']:<26}{s['device']:>6}  skipped: {s['reason']}")
    for e in report["errors"]:
        lines.append(f"{e['backend']:<26}{e['device']:>6}{e['threads']:>4}  failed: {e['error']}")
    lines.append(
        "latency: batch 1, after warm-up. size: state dict / frozen TorchScript / ONNX file. "
        "inf MB: resident memory peak added by the first one-image inference in a fresh "
        "process (GPU: max allocated); mem MB: model loaded + that inference, above the "
        "interpreter and its libraries"
    )
    if "quantization" in report:
        lines.append(f"int8 calibration: {report['quantization']['calibration_data']}")
    return "\n".join(lines)
