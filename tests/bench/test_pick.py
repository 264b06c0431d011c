"""`pick` on synthetic study folders: summary.json (accuracy) + bench.json (latency)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnbench.bench.errors import BenchError
from cnnbench.bench.pick import format_pick, pick
from cnnbench.cli import main


def _run(root: Path, name: str, acc: float | None, p99: dict | None, model: str = "m") -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(
        json.dumps({"name": name, "status": "complete", "model": model, "test_acc": acc})
    )
    if p99 is not None:
        results = [{"backend": b, "device": dev, "threads": t, "batch": 1,
                    "p50_ms": ms / 2, "p90_ms": ms * 0.8, "p99_ms": ms}
                   for (b, dev, t), ms in p99.items()]  # fmt: skip
        (d / "bench.json").write_text(json.dumps({"results": results}))


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    _run(root, "big", 0.93, {("eager", "cpu", 1): 9.0, ("onnxruntime", "cpu", 1): 4.0})
    _run(
        root,
        "mid",
        0.90,
        {("eager", "cpu", 1): 3.0, ("onnxruntime", "cpu", 1): 1.5, ("onnxruntime", "cpu", 2): 1.0},
    )
    _run(root, "small", 0.60, {("onnxruntime", "cpu", 1): 0.2})
    _run(root, "unmeasured", 0.99, None)
    _run(root, "gpu_only", 0.95, {("eager", "cuda", 1): 0.5})
    _run(root / "nested", "deep", 0.70, {("eager", "cpu", 1): 0.9})
    (root / "summary.json").write_text(json.dumps({"study": "x"}))  # a study's own: not a run
    return root


def test_most_accurate_within_budget(study):
    r = pick(study, 2.0)
    assert r["choice"]["run"] == "mid" and r["choice"]["latency_ms"] == 1.0  # fastest: 2 threads
    assert [x["run"] for x in r["fits"]] == ["mid", "nested/deep", "small"]
    assert [x["run"] for x in r["over"]] == ["big"]
    assert {x["run"] for x in r["unmeasured"]} == {"unmeasured", "gpu_only"}
    text = format_pick(r)
    assert text.startswith("pick: mid") and "cnnbench bench <run>" in text


def test_thread_and_metric_filters(study):
    assert pick(study, 1.2, threads=1)["choice"]["run"] == "nested/deep"
    assert pick(study, 2.0, metric="p50")["choice"]["run"] == "big"  # p50 of big is 2.0
    assert pick(study, 1.0, device="cuda")["choice"]["run"] == "gpu_only"


def test_none_fits_names_the_closest(study):
    r = pick(study, 0.1)
    assert r["choice"] is None and r["closest"]["run"] == "small"
    assert "closest: small" in format_pick(r)


def test_cli_exit_codes(study, capsys):
    assert main(["pick", str(study), "--budget-ms", "2"]) == 0
    assert "pick: mid" in capsys.readouterr().out
    assert main(["pick", str(study), "--budget-ms", "0.01"]) == 1
    assert "no measured model fits" in capsys.readouterr().out
    assert main(["pick", str(study), "--budget-ms", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["choice"]["run"] == "mid"


def test_bad_inputs(tmp_path):
    with pytest.raises(BenchError, match="no runs"):
        pick(tmp_path, 1.0)
    with pytest.raises(BenchError, match="not a folder"):
        pick(tmp_path / "nope", 1.0)
    with pytest.raises(BenchError, match="budget"):
        pick(tmp_path, 0)
