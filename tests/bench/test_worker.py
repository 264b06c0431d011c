"""Each measurement runs in its own process, which reports back as JSON."""

from __future__ import annotations

import os

import torch

from cnnbench.bench._worker import run_worker
from cnnbench.bench.latency import measure_matmul_peak
from cnnbench.export import export_onnx
from cnnbench.models import create_model


def _weights(tmp_path, name="lenet5"):
    model = create_model(name).eval()
    path = tmp_path / "w.pt"
    torch.save({"model": model.state_dict(), "model_spec": dict(model.cnnbench_spec)}, path)
    return model, path


JOB = {
    "input_size": [3, 32, 32],
    "warmup": 2,
    "iters": 25,
    "max_seconds": 60.0,
    "throughput_batch": 8,
    "throughput_iters": 3,
    "threads": 1,
    "device": "cpu",
}


def test_eager_worker_reports_ordered_latency_and_runs_elsewhere(tmp_path):
    _, weights = _weights(tmp_path)
    threads_before = torch.get_num_threads()
    r = run_worker({**JOB, "backend": "eager", "weights": str(weights), "threads": 1})
    assert "error" not in r, r
    assert r["pid"] != os.getpid()
    assert r["iters"] == 25 and r["batch"] == 1 and r["threads"] == 1
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["torch_threads"] == 1
    assert r["throughput"]["batch"] == 8 and r["throughput"]["images_per_s"] > 0
    assert r["size_bytes"] > 0 and r["memory"]["peak_delta_bytes"] >= 0
    assert torch.get_num_threads() == threads_before  # the worker's setting stayed there


def test_onnxruntime_worker_never_imports_torch(tmp_path):
    model, _ = _weights(tmp_path)
    onnx = export_onnx(model, tmp_path / "m.onnx")
    r = run_worker({**JOB, "backend": "onnxruntime", "onnx_path": str(onnx), "threads": 2})
    assert "error" not in r, r
    assert r["torch_imported"] is False
    assert r["ort_threads"] == 2 and r["size_bytes"] == onnx.stat().st_size
    assert r["p50_ms"] <= r["p99_ms"]


def test_torchscript_worker(tmp_path):
    _, weights = _weights(tmp_path)
    r = run_worker({**JOB, "backend": "torchscript", "weights": str(weights)})
    assert "error" not in r, r
    assert r["iters"] == 25 and r["throughput"]["images_per_s"] > 0


def test_a_failing_job_comes_back_as_an_error(tmp_path):
    r = run_worker({**JOB, "backend": "eager", "weights": str(tmp_path / "missing.pt")})
    assert "FileNotFoundError" in r["error"]
    r = run_worker({**JOB, "backend": "onnxruntime", "onnx_path": str(tmp_path / "nope.onnx")})
    assert "error" in r


def test_matmul_peak_runs_in_its_own_process():
    r = measure_matmul_peak(1, n=64, iters=3, max_seconds=5.0)
    assert r["kind"] == "peak" and r["n"] == 64 and r["threads"] == 1
    assert r["best_gmacs"] >= r["median_gmacs"] > 0
