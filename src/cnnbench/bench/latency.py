"""`cnnbench bench`: latency, throughput, size and peak memory of a model on several backends.

    report = measure("mobilenetv2_reduced", threads=[1])   # untrained weights: fine for timing
    report = measure("runs/mnv2r")                         # a trained run (or a zoo name)
    measure_run("runs/mnv2r", quick=True)                  # writes runs/mnv2r/bench.json
    latency_summary("runs/mnv2r")  # {"p50_ms", "p99_ms", "backend", "threads", "device"}

Each (backend, thread count) is measured in a fresh worker process (``_worker``), one after
the other, never two at once. Latency is batch 1: ``warmup`` untimed calls, then up to
``iters`` timed single-image calls (fewer if ``max_seconds`` runs out; the count is
reported), p50 / p90 / p99. Throughput is images/s from the median time of a
``throughput_batch`` call. Memory is the resident-memory peak added by the first inference
of one image in the fresh process (CPU), or ``torch.cuda.max_memory_allocated`` (GPU). Size is
the serialised state dict (eager), the frozen TorchScript module, or the ONNX file.

The files a measurement makes (weights, ONNX exports) live in a private temp folder
(``cnnbench-bench-*``) that is deleted on every exit path: a return, an error, Ctrl-C and
SIGTERM (raised as SystemExit while ``measure`` runs, so the cleanup runs). A process killed
outright (SIGKILL, an OOM kill) cannot clean up: its folder is deleted by the next
measurement, which finds the folder's lock free.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench import rundir, scratch
from cnnbench.bench._worker import run_worker
from cnnbench.bench.errors import BenchError
from cnnbench.env import usable_cpus
from cnnbench.fileio import write_json_atomic
from cnnbench.rundir import RunDir, RunDirError

__all__ = [
    "BACKENDS",
    "QUICK_BACKENDS",
    "default_threads",
    "fastest",
    "format_report",
    "latency_summary",
    "measure",
    "measure_matmul_peak",
    "measure_run",
    "parse_backends",
]

BACKENDS = ("eager", "torchscript", "onnxruntime", "onnxruntime-int8")
# The quick subset: the PyTorch baseline and the fastest fp32 path we measured on CPUs at
# batch 1 (ONNX Runtime; see benchmarks/latency.py). Int8 needs calibration data: not quick.
QUICK_BACKENDS = ("eager", "onnxruntime")
# measure_run(quick=True) and `cnnbench bench --quick`: a few seconds per backend.
QUICK_SETTINGS: dict[str, Any] = {
    "backends": QUICK_BACKENDS,
    "threads": [1],
    "iters": 300,
    "warmup": 20,
    "max_seconds": 2.0,
    "throughput_batch": None,
}
_ALIASES = {
    "torch": "eager",
    "pytorch": "eager",
    "jit": "torchscript",
    "ts": "torchscript",
    "ort": "onnxruntime",
    "onnx": "onnxruntime",
    "int8": "onnxruntime-int8",
    "ort-int8": "onnxruntime-int8",
}
# GPU variants of the eager backend: (label, autocast dtype, channels_last).
GPU_VARIANTS = (("eager", None, False), ("eager-bf16-channels_last", "bf16", True))
BENCH_FORMAT = 1
# The temp folders of measurements (cnnbench.scratch).
SCRATCH_PREFIX = "cnnbench-bench-"


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
    return sorted({1, usable_cpus()})


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


@dataclass
class _Target:
    """The model to measure and where it came from."""

    kind: str  # "run", "checkpoint" or "model" (a registered name, untrained)
    model: Any
    spec: dict[str, Any]
    input_size: list[int]
    weights: str  # what the report says about the weights
    ckpt: dict[str, Any] | None = None  # None for an untrained model


def _resolve(target: RunDir | str | Path, num_classes: int, image_size: int) -> _Target:
    """The model to measure: a run (a folder, or a zoo name), a .pt checkpoint, or a
    registered model name (untrained weights)."""
    from cnnbench.models import list_models

    if isinstance(target, RunDir):
        return _trained(target, "run")
    path = Path(target)
    if path.is_dir():
        return _trained(RunDir(path), "run")
    if path.suffix == ".pt":
        return _trained(path, "checkpoint")
    name = str(target)
    if name in list_models():
        return _untrained(name, num_classes, image_size)
    try:
        run = rundir.resolve(name)  # a shipped zoo model
    except RunDirError:
        raise BenchError(
            f"{name!r} is neither a run directory nor a model; models: {', '.join(list_models())}"
        ) from None
    return _trained(run, "run")


def _trained(source: RunDir | Path, kind: str) -> _Target:
    from cnnbench.inference import checkpoint_input_size, load_trained

    model, ckpt = load_trained(source)
    where = source.path if isinstance(source, RunDir) else source
    return _Target(
        kind=kind,
        model=model,
        spec=ckpt["model_spec"],
        input_size=checkpoint_input_size(ckpt),
        weights=f"trained ({where}, epoch {ckpt.get('epoch')})",
        ckpt=ckpt,
    )


def _untrained(name: str, num_classes: int, image_size: int) -> _Target:
    import torch

    from cnnbench.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes).eval()
    return _Target(
        kind="model",
        model=model,
        spec=dict(model.cnnbench_spec),
        input_size=[3, image_size, image_size],
        weights="untrained (seed 0): fine for timing",
    )


def measure(
    target: RunDir | str | Path,
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
    """Measure ``target`` (run dir, zoo name, .pt or model name) on every backend and thread
    count.

    ``device``: "cpu", "cuda" or "auto" (CPU, plus the GPU variants when CUDA is available).
    A GPU asked for but absent is recorded under ``skipped``, as is a backend that fails
    (under ``errors``, with the worker's message); the other measurements still run.
    """
    say = log or (lambda _msg: None)
    if device not in ("auto", "cpu", "cuda"):
        raise BenchError(f"device must be auto, cpu or cuda, got {device!r}")
    backends = parse_backends(backends)
    threads = sorted(set(threads)) if threads else default_threads()
    if any(t < 1 for t in threads):
        raise BenchError("thread counts must be >= 1")
    t_start = time.perf_counter()
    tgt = _resolve(target, num_classes, image_size)
    settings = {"backends": backends, "threads": threads, "iters": iters, "warmup": warmup,
                "max_seconds": max_seconds, "throughput_batch": throughput_batch,
                "device": device}  # fmt: skip
    report = _new_report(target, tgt, settings)
    # What every worker job has: the timing settings (see _worker's docstring).
    common = {"input_size": tgt.input_size, "throughput_seconds": throughput_seconds,
              **{k: settings[k] for k in ("warmup", "iters", "max_seconds", "throughput_batch")}}  # fmt: skip
    with _sigterm_exits(), scratch_dir() as tmp:
        weights = _save_weights(tgt, tmp)
        files = {}
        if device != "cuda":
            files = _onnx_files(tgt, backends, tmp, report, calibration_size, data_dir, say)
        jobs = _jobs(backends, threads, device, files, weights, common, report)
        _run_jobs(jobs, report, say)
    report["environment"]["loadavg_end"] = _loadavg()
    report["elapsed_s"] = time.perf_counter() - t_start
    return report


def scratch_dir() -> AbstractContextManager[Path]:
    """A private ``cnnbench-bench-*`` temp folder for a measurement (``cnnbench.scratch``)."""
    return scratch.scratch_dir(SCRATCH_PREFIX)


def remove_orphan_scratch(root: str | Path | None = None) -> list[Path]:
    """Delete the measurement temp folders whose owner was killed; returns them."""
    return scratch.remove_orphans(SCRATCH_PREFIX, root)


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While the block runs, SIGTERM raises SystemExit (exit status 143) so the temp folder
    and the worker process are cleaned up. A handler someone else installed (the study's)
    is left alone, as is everything off the main thread."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def exit_now(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _new_report(target: Any, tgt: _Target, settings: dict[str, Any]) -> dict[str, Any]:
    """The report before any measurement: the model, the settings, the machine now."""
    from cnnbench.env import environment
    from cnnbench.profile import count_macs, count_params

    return {
        "format": BENCH_FORMAT,
        "target": str(target.path if isinstance(target, RunDir) else target),
        "kind": tgt.kind,
        "model": tgt.spec["name"],
        "model_spec": tgt.spec,
        "weights": tgt.weights,
        "input_size": tgt.input_size,
        "params": count_params(tgt.model),
        "macs": count_macs(tgt.model, tuple(tgt.input_size)),
        "settings": settings,
        "environment": {**environment("cpu"), "loadavg_start": _loadavg()},
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results": [],
        "skipped": [],
        "errors": [],
    }


def _save_weights(tgt: _Target, folder: Path) -> Path:
    """The model's weights and spec as the torch workers load them."""
    import torch

    weights = folder / "weights.pt"
    torch.save({"model": tgt.model.state_dict(), "model_spec": tgt.spec}, weights)
    return weights


def _onnx_files(
    tgt: _Target,
    backends: Sequence[str],
    folder: Path,
    report: dict[str, Any],
    calibration_size: int,
    data_dir: str | None,
    say: Callable[[str], None],
) -> dict[str, Path]:
    """{backend: file} of the ONNX Runtime backends asked for: the fp32 export and, for
    int8, its quantisation. A failure is recorded under ``errors`` (the torch backends are
    still worth measuring) and leaves that backend out."""
    from cnnbench.export import calibration_data, export_onnx, quantize_int8

    files: dict[str, Path] = {}
    if "onnxruntime" not in backends and "onnxruntime-int8" not in backends:
        return files
    say("exporting to ONNX ...")
    try:
        files["onnxruntime"] = export_onnx(
            tgt.model, folder / "model.onnx", input_size=tgt.input_size
        )
    except Exception as e:
        failed = f"ONNX export failed: {type(e).__name__}: {e}"
        for b in ("onnxruntime", "onnxruntime-int8"):
            if b in backends:
                report["errors"].append(_error_row(b, "cpu", 0, failed))
        return files
    if "onnxruntime-int8" in backends:
        x, mean, std, about = calibration_data(tgt.ckpt, tgt.input_size, calibration_size, data_dir)
        say(f"quantising to int8 (calibration: {about}) ...")
        q_path = folder / "model.int8.onnx"
        try:
            q = quantize_int8(files["onnxruntime"], q_path, x, mean, std)
            report["quantization"] = {**q, "calibration_data": about}
            files["onnxruntime-int8"] = q_path
        except Exception as e:
            report["errors"].append(
                _error_row("onnxruntime-int8", "cpu", 0, f"quantisation failed: {e}")
            )
    return files


def _jobs(
    backends: Sequence[str],
    threads: Sequence[int],
    device: str,
    files: dict[str, Path],
    weights: Path,
    common: dict[str, Any],
    report: dict[str, Any],
) -> list[dict[str, Any]]:
    """One worker job per (thread count, backend) on the CPU, then the GPU variants; a GPU
    asked for but absent is recorded under ``skipped``."""
    jobs: list[dict[str, Any]] = []
    if device != "cuda":  # device="cuda": the GPU variants only
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
        jobs += _gpu_jobs(weights, common, report)
    return jobs


def _gpu_jobs(weights: Path, common: dict[str, Any], report: dict[str, Any]) -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        reason = "CUDA is not available (torch.cuda.is_available() is False)"
        report["skipped"] += [
            {"backend": label, "device": "cuda", "reason": reason} for label, _, _ in GPU_VARIANTS
        ]
        return []
    return [
        {
            **common,
            "backend": "eager",
            "label": label,
            "device": "cuda",
            "threads": 1,
            "amp": amp,
            "channels_last": cl,
            "weights": str(weights),
        }
        for label, amp, cl in GPU_VARIANTS
    ]


def _run_jobs(jobs: list[dict[str, Any]], report: dict[str, Any], say: Callable) -> None:
    """Each job in its own worker process, one after the other; results or errors."""
    for job in jobs:
        label = job.pop("label", job["backend"])
        say(f"measuring {label} on {job['device']}, {job['threads']} thread(s) ...")
        res = run_worker(job)
        if "error" in res:
            report["errors"].append(_error_row(label, job["device"], job["threads"], res["error"]))
            continue
        res["backend"] = label
        report["results"].append(res)


def _error_row(backend: str, device: str, threads: int, error: str) -> dict[str, Any]:
    return {"backend": backend, "device": device, "threads": threads, "error": error}


def measure_run(run_dir: RunDir | str | Path, quick: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Measure a trained run and write ``<run>/bench.json`` (replacing an older one).

    ``quick=True``: threads=1, eager + ONNX Runtime fp32, up to 300 calls or ~2 s per backend,
    no throughput; under 20 s for lenet5 / mobilenetv2_reduced. ``quick=False``: every
    backend and thread count of ``measure``. Other keywords go to ``measure``.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    best = run.checkpoint_path("best")
    if not best.is_file() and not run.checkpoint_path("last").is_file():
        raise BenchError(f"{run.path} has no checkpoint ({best.name}): not a finished run")
    if quick:
        kwargs = {**QUICK_SETTINGS, "device": "cpu", **kwargs}
    report = measure(run, **kwargs)
    report["quick"] = quick
    write_report(report, run.bench_path)
    return report


def measure_matmul_peak(
    threads: int, *, n: int = 1024, iters: int = 30, max_seconds: float = 5.0
) -> dict[str, Any]:
    """fp32 ``n`` x ``n`` matmul throughput on ``threads`` threads, in a fresh process: the
    compute limit a conv net can approach (``best_gmacs``, ``median_gmacs``, GFLOP/s too)."""
    job = {"kind": "peak", "threads": threads, "n": n, "iters": iters, "max_seconds": max_seconds}
    result = run_worker(job)
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


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

    def wanted(r: dict[str, Any]) -> bool:
        return (
            r.get("batch", 1) == 1
            and key in r
            and (device is None or r.get("device") == device)
            and (threads is None or r.get("threads") == threads)
        )

    rows = [r for r in report.get("results", []) if wanted(r)]
    return min(rows, key=lambda r: r[key]) if rows else None


def latency_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """{"p50_ms", "p99_ms", "backend", "threads", "device"} of the fastest (by p50) batch-1
    result in ``<run>/bench.json``, preferring the CPU; None without a readable bench.json."""
    report = RunDir(run_dir).bench()
    if report is None:
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
    head = (
        f"{'backend':<26}{'device':>6}{'thr':>4}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
        f"{'calls':>7}{f'img/s@{tb}' if tb else 'img/s':>11}{'size MB':>9}{'inf MB':>8}"
        f"{'mem MB':>8}"
    )
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
