"""One measurement in a fresh process: ``python -m cnnbench.bench._worker`` (JSON in, JSON out).

Why a process per backend: thread pools, allocator caches, oneDNN primitive caches and the
resident-memory high-water mark are per process, so two backends timed in one process
disturb each other, and a peak-memory number would include whatever ran before. The parent
(``run_worker``) writes a job as JSON on stdin; the worker prints one line
``CNNBENCH_RESULT {...}`` on stdout. The ONNX Runtime backends never import torch, so their
memory numbers do not include it. Callers outside ``cnnbench.bench`` use its public entry
points, ``measure`` and ``measure_matmul_peak``, not this module.

Job keys: ``kind`` ("latency", default, or "peak"), ``backend`` ("eager", "torchscript",
"onnxruntime", "onnxruntime-int8"), ``device`` ("cpu" or "cuda"), ``weights`` (a .pt file with
``model`` and ``model_spec``, torch backends) or ``onnx_path`` (ORT backends),
``input_size`` [C, H, W], ``threads``, ``warmup``, ``iters``, ``max_seconds``,
``throughput_batch`` (None: skip), ``throughput_iters``, ``throughput_seconds``, ``amp``
("bf16" or None, CUDA), ``channels_last`` (bool, CUDA).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnbench.bench._timing import (
    current_rss,
    latency_stats,
    release_free_memory,
    rss_probe,
    time_calls,
)

RESULT_MARKER = "CNNBENCH_RESULT "


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_runner(job: dict[str, Any]) -> tuple[Callable[[Any], Any], Any, dict[str, Any]]:
    """(call(x), make_input(batch), info) for the eager / torchscript backends."""
    import torch

    threads = int(job["threads"])
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set in this process: harmless
        torch.set_num_interop_threads(1)
    from cnnbench.models import create_model

    state = torch.load(job["weights"], map_location="cpu", weights_only=True)
    model = create_model(**state["model_spec"])
    model.load_state_dict(state["model"])
    model.eval()
    dev = torch.device(job.get("device", "cpu"))
    channels_last = bool(job.get("channels_last")) and dev.type == "cuda"
    amp = job.get("amp") if dev.type == "cuda" else None
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)

    def make_input(batch: int) -> Any:
        x = torch.randn(batch, *job["input_size"], generator=gen).to(dev)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    info: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    fn = _torch_backend(model, job["backend"], make_input, info)

    def call(x: Any) -> Any:
        with torch.inference_mode():
            if amp == "bf16":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return fn(x)
            return fn(x)

    if dev.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(dev)
        info["sync"] = torch.cuda.synchronize
    info["amp"] = amp
    info["channels_last"] = channels_last
    return call, make_input, info


def _torch_backend(
    model: Any, backend: str, make_input: Callable[[int], Any], info: dict[str, Any]
) -> Any:
    """What is timed for ``backend``: the eager module, or its traced, frozen and optimised
    TorchScript; ``info`` gets the serialised size (and how TorchScript was made)."""
    import torch

    if backend == "eager":
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        info["size_bytes"] = buf.tell()
        return model
    if backend != "torchscript":
        raise ValueError(f"unknown torch backend {backend!r}")
    with torch.no_grad():
        traced = torch.jit.trace(model, make_input(1))
        frozen = torch.jit.freeze(traced.eval())
        buf = io.BytesIO()
        torch.jit.save(frozen, buf)
        info["size_bytes"] = buf.tell()
        # Folds conv+BN and, on CPU, pre-packs weights for oneDNN; not serialisable as such,
        # so the size above is the frozen module's.
        fn = torch.jit.optimize_for_inference(traced.eval())
    info["torchscript"] = "trace + freeze + optimize_for_inference"
    return fn


def _ort_runner(job: dict[str, Any]) -> tuple[Callable[[Any], Any], Any, dict[str, Any]]:
    """(call(x), make_input(batch), info) for ONNX Runtime on the CPU; no torch import."""
    import numpy as np

    from cnnbench.inference.runtime import ort_session

    threads = int(job["threads"])
    path = job["onnx_path"]
    sess = ort_session(path, threads)  # all graph optimisations, sequential, fixed threads
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(0)

    def make_input(batch: int) -> Any:
        return rng.standard_normal((batch, *job["input_size"]), dtype=np.float32)

    def call(x: Any) -> Any:
        return sess.run(None, {name: x})

    info = {
        "size_bytes": os.path.getsize(path),
        "ort_threads": threads,
        "graph_optimization": "ORT_ENABLE_ALL",
        "execution_mode": "sequential",
    }
    return call, make_input, info


def _matmul_peak(job: dict[str, Any]) -> dict[str, Any]:
    """Single-process fp32 matmul throughput: the compute limit a conv net can approach."""
    import torch

    threads = int(job["threads"])
    torch.set_num_threads(threads)
    n = int(job.get("n", 1024))
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    times = time_calls(
        lambda: torch.mm(a, b, out=out),
        warmup=3,
        iters=int(job.get("iters", 30)),
        max_seconds=float(job.get("max_seconds", 5.0)),
    )
    flops = 2 * n**3
    best = min(times)
    med = sorted(times)[len(times) // 2]
    return {
        "kind": "peak",
        "threads": threads,
        "n": n,
        "iters": len(times),
        "best_gflops": flops / best / 1e9,
        "median_gflops": flops / med / 1e9,
        "best_gmacs": flops / 2 / best / 1e9,
        "median_gmacs": flops / 2 / med / 1e9,
    }


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Do one measurement in this process (called in the worker; see the module docstring)."""
    if job.get("kind", "latency") == "peak":
        return _matmul_peak(job)
    backend = job["backend"]
    ort_backend = backend in ("onnxruntime", "onnxruntime-int8")
    model_file = job["onnx_path"] if ort_backend else job["weights"]
    if not os.path.isfile(model_file):  # before the (slow) imports
        raise FileNotFoundError(f"no model file {model_file}")
    baseline = _library_baseline(ort_backend)
    t0 = time.perf_counter()
    call, make_input, info = _ort_runner(job) if ort_backend else _torch_runner(job)
    load_s = time.perf_counter() - t0
    sync = info.pop("sync", None)
    device = job.get("device", "cpu")

    x1 = make_input(1)
    memory = _first_inference_memory(call, x1, device, baseline)
    times = time_calls(
        lambda: call(x1),
        warmup=int(job["warmup"]),
        iters=int(job["iters"]),
        max_seconds=float(job["max_seconds"]),
        sync=sync,
    )
    result: dict[str, Any] = {
        "kind": "latency",
        "backend": backend,
        "device": device,
        "threads": int(job["threads"]),
        "batch": 1,
        **latency_stats(times),
        "warmup": int(job["warmup"]),
        "memory": memory,
        "load_s": load_s,
    }
    if job.get("throughput_batch"):
        result["throughput"] = _throughput(call, make_input, job, sync)
    result.update(info)
    result["torch_imported"] = "torch" in sys.modules
    result["pid"] = os.getpid()
    libs = ("onnxruntime", "numpy") if ort_backend else ("torch",)
    result["versions"] = {lib: _version(lib) for lib in libs}
    return result


def _library_baseline(ort_backend: bool) -> int | None:
    """Resident memory of the interpreter + the backend's libraries, before any model exists."""
    if ort_backend:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401

        import cnnbench.inference.runtime
    else:
        import torch  # noqa: F401

        import cnnbench.models  # noqa: F401
    release_free_memory()
    return current_rss()


def _first_inference_memory(
    call: Callable[[Any], Any], x1: Any, device: str, baseline: int | None
) -> dict[str, Any]:
    """Peak memory added by the first one-image inference in this fresh process: what a
    freshly started server pays (GPU: ``max_memory_allocated``)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call(x1)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        return {"method": "torch.cuda.max_memory_allocated", "peak_delta_bytes": peak}
    with rss_probe() as probe:
        call(x1)
    memory = {
        "method": probe.method,
        "peak_delta_bytes": probe.delta,
        "rss_baseline_bytes": baseline,
        "rss_before_bytes": probe.before,
        "rss_peak_bytes": probe.peak,
    }
    if baseline is not None and probe.method == "vmhwm-reset":
        # Model + first inference above the libraries: what serving this model adds.
        memory["footprint_bytes"] = max(0, probe.peak - baseline)
    return memory


def _throughput(
    call: Callable[[Any], Any], make_input: Any, job: dict[str, Any], sync: Any
) -> dict[str, Any]:
    """Images/s from the median time of one ``throughput_batch`` call."""
    tb = int(job["throughput_batch"])
    xb = make_input(tb)
    bt = time_calls(
        lambda: call(xb),
        warmup=1,
        iters=int(job.get("throughput_iters", 20)),
        max_seconds=float(job.get("throughput_seconds", 5.0)),
        min_iters=2,
        sync=sync,
    )
    st = latency_stats(bt)
    return {
        "batch": tb,
        "images_per_s": tb / (st["p50_ms"] / 1e3),
        "batch_p50_ms": st["p50_ms"],
        "iters": st["iters"],
    }


def run_worker(job: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``job`` in a fresh ``python -m cnnbench.bench._worker``; its result or ``{"error"}``.

    Thread-count variables are set before the interpreter starts (OpenMP reads them once).
    A crash, a timeout or a Python error in the worker comes back as ``{"error": message}``;
    this process is never affected.
    """
    threads = str(int(job.get("threads", 1)))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONWARNINGS": "ignore",
    }
    src = str(Path(__file__).resolve().parents[2])  # the folder holding the cnnbench package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cnnbench.bench._worker"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    last = err[-1] if err else "no output"
    return {"error": f"worker failed (exit {proc.returncode}): {last}"}


def _exit_with_parent(poll_s: float = 0.2) -> None:
    """End this worker once the process that started it is gone (killed outright, it
    cannot stop us): an orphan is re-parented, so its parent PID changes (POSIX)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(1)


def main() -> int:
    threading.Thread(target=_exit_with_parent, name="cnnbench-parent-watch", daemon=True).start()
    job = json.loads(sys.stdin.read())
    try:
        result = run_job(job)
    except Exception as e:  # reported to the parent as data, with the type
        result = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
