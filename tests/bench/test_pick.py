"""`pick` on synthetic study folders: summary.json (accuracy) + bench.json (latency)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnbench.bench.errors import BenchError
from cnnbench.bench.pick import format_pick, pick
from cnnbench.cli import main


def _run(
    root: Path, name: str, acc: float | None, p99: dict | None, model: str = "m", **summary
) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(
        json.dumps({"name": name, "status": "complete", "model": model, "test_acc": acc, **summary})
    )
    if p99 is not None:
        results = [{"backend": b, "device": dev, "threads": t, "batch": 1,
                    "p50_ms": ms / 2, "p90_ms": ms * 0.8, "p99_ms": ms}
                   for (b, dev, t), ms in p99.items()]  # fmt: skip
        (d / "bench.json").write_text(json.dumps({"results": results}))
    return d


@pytest.fixture(autouse=True)
def zoo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A zoo of our own (empty unless a test adds to it): the shipped one changes."""
    root = tmp_path / "zoo"
    root.mkdir()
    monkeypatch.setattr("cnnbench.zoo.root", lambda: root)
    return root


def _zoo(root: Path, name: str, acc: float, p99: dict | None, dataset: str = "cifar10") -> None:
    d = _run(root, name, acc, p99, model=name.split("-")[0], dataset=dataset)
    (d / "zoo.json").write_text(json.dumps({"name": name, "dataset": dataset, "test_acc": acc}))


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


def _cifar_study(root: Path) -> Path:
    study = root / "cifar"
    _run(study, "small", 0.60, {("onnxruntime", "cpu", 1): 0.2}, dataset="cifar10")
    _run(study, "big", 0.80, {("onnxruntime", "cpu", 1): 3.0}, dataset="cifar10")
    return study


def test_zoo_models_compete_marked_as_zoo(tmp_path, zoo_root, capsys):
    study = _cifar_study(tmp_path)
    _zoo(zoo_root, "fastnet_small-cifar10", 0.9158, {("onnxruntime", "cpu", 1): 1.5})
    _zoo(zoo_root, "fastnet_small-cifar100", 0.99, {("onnxruntime", "cpu", 1): 0.1}, "cifar100")
    r = pick(study, 2.0)
    assert r["choice"]["run"] == "zoo:fastnet_small-cifar10" and r["choice"]["source"] == "zoo"
    assert r["choice"]["serve"] == "cnnbench serve fastnet_small-cifar10"
    assert [x["run"] for x in r["fits"]] == ["zoo:fastnet_small-cifar10", "small"]
    assert all("cifar100" not in x["run"] for x in r["fits"] + r["over"])  # other dataset
    text = format_pick(r)
    assert text.startswith("pick: zoo:fastnet_small-cifar10 (fastnet_small, zoo)")
    assert "serve it: cnnbench serve fastnet_small-cifar10" in text
    assert main(["pick", str(study), "--budget-ms", "2"]) == 0
    assert "pick: zoo:fastnet_small-cifar10" in capsys.readouterr().out
    # --no-zoo: only the study's own runs
    assert pick(study, 2.0, zoo=False)["choice"]["run"] == "small"
    assert main(["pick", str(study), "--budget-ms", "2", "--no-zoo", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["choice"]["run"] == "small" and out["choice"]["source"] == "study"
    assert out["choice"]["serve"] == f"cnnbench serve {study / 'small'}"


def test_a_run_that_did_not_learn_is_never_picked(tmp_path):
    study = tmp_path / "s"
    # The fastest and "most accurate" under the budget, but at chance, all in one class
    _run(study, "collapsed", 0.10, {("onnxruntime", "cpu", 1): 0.1}, dataset="cifar10",
         test_images=10_000, test_pred_counts=[10_000] + [0] * 9)  # fmt: skip
    # The trainer's own verdict is taken as written
    _run(study, "flagged", 0.95, {("onnxruntime", "cpu", 1): 0.1}, dataset="cifar10",
         did_not_learn="one class takes 90% of the predictions")  # fmt: skip
    _run(study, "learned", 0.05, {("onnxruntime", "cpu", 1): 0.5}, dataset="cifar10",
         did_not_learn=None)  # fmt: skip
    r = pick(study, 1.0)
    assert r["choice"]["run"] == "learned"
    skipped = {x["run"]: x["reason"] for x in r["skipped"]}
    assert skipped["collapsed"].startswith("did not learn: test accuracy 10.00% is not above")
    assert skipped["flagged"] == "did not learn: one class takes 90% of the predictions"
    assert "did not learn" in format_pick(r)
    assert pick(study, 0.2)["choice"] is None  # nothing that learned fits
