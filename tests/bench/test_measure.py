"""`measure`, `measure_run`, `latency_summary` and `cnnbench bench` on small models."""

from __future__ import annotations

import json

import pytest
import torch

from cnnbench.bench import latency_summary, measure, measure_run
from cnnbench.bench.errors import BenchError
from cnnbench.bench.latency import format_report, parse_backends
from cnnbench.cli import main

FAST = {"iters": 20, "warmup": 2, "max_seconds": 30.0, "throughput_batch": None}


def test_measure_a_model_name():
    r = measure("lenet5", backends=["eager", "ort"], threads=[1], device="auto", **FAST)
    assert r["model"] == "lenet5" and r["params"] > 0 and r["macs"] > 0
    assert [(x["backend"], x["threads"]) for x in r["results"] if x["device"] == "cpu"] == [
        ("eager", 1),
        ("onnxruntime", 1),
    ]
    for x in r["results"]:
        assert x["iters"] == 20 and x["p50_ms"] <= x["p90_ms"] <= x["p99_ms"]
    if not torch.cuda.is_available():  # the GPU path is skipped, and says why
        assert {s["device"] for s in r["skipped"]} == {"cuda"}
        assert "CUDA is not available" in r["skipped"][0]["reason"]
    text = format_report(r)
    assert "onnxruntime" in text and "p99 ms" in text and "load average" in text
    json.dumps(r)  # the report is plain JSON


def test_measure_run_writes_bench_json_and_summary(fake_run):
    assert latency_summary(fake_run) is None
    report = measure_run(fake_run, quick=True)
    assert report["quick"] is True
    saved = json.loads((fake_run / "bench.json").read_text())
    assert {r["backend"] for r in saved["results"]} == {"eager", "onnxruntime"}
    assert all(r["threads"] == 1 for r in saved["results"])
    s = latency_summary(fake_run)
    assert set(s) >= {"p50_ms", "p99_ms", "backend", "threads"}
    assert s["p50_ms"] == min(r["p50_ms"] for r in saved["results"])


def test_measure_run_needs_a_checkpoint(tmp_path):
    with pytest.raises(BenchError, match="no checkpoint"):
        measure_run(tmp_path)


def test_backend_names():
    assert parse_backends("int8,torch") == ["eager", "onnxruntime-int8"]
    assert parse_backends("all") == ["eager", "torchscript", "onnxruntime", "onnxruntime-int8"]
    with pytest.raises(BenchError, match="unknown backend"):
        parse_backends("tensorrt")


def test_cli_bench_run_dir_and_json(fake_run, tmp_path, capsys):
    out = tmp_path / "b.json"
    options = "--backends eager --threads 1 --iters 10 --warmup 1 --batch 4 --device cpu"
    argv = ["bench", str(fake_run), *options.split(), "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "lenet5" in text and "img/s@4" in text
    assert json.loads(out.read_text())["results"][0]["throughput"]["batch"] == 4
    assert (fake_run / "bench.json").is_file()


def test_cli_bench_takes_a_zoo_name_and_leaves_its_card_alone(fake_run, monkeypatch, capsys):
    from cnnbench import zoo
    from cnnbench.rundir import sha256_of

    card = {"name": "tiny-zoo", "sha256": sha256_of(fake_run / "best.pt")}
    (fake_run / "zoo.json").write_text(json.dumps(card))
    monkeypatch.setattr(zoo, "find", lambda name: fake_run if name == "tiny-zoo" else None)
    options = "--backends eager --threads 1 --iters 5 --warmup 1 --batch 0 --device cpu"
    argv = ["bench", "tiny-zoo", *options.split()]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lenet5 - trained" in out and "not written" in out
    assert not (fake_run / "bench.json").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["bench", "no_such_model"], "neither a run directory nor a model"),
        (["bench"], "name a model or a run directory"),
        (["bench", "lenet5", "--backends", "tensorrt"], "unknown backend"),
        (["bench", "--cost", "--model", "lenet5"], "no depthwise-separable"),
    ],
)
def test_cli_bench_user_errors(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_cli_cost_prints_both_mobilenets(capsys):
    assert main(["bench", "--cost"]) == 0
    out = capsys.readouterr().out
    assert "mobilenetv2:" in out and "mobilenetv2_reduced:" in out
    assert out.count("every block agrees exactly") == 2
