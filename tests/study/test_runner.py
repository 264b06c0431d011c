"""A small real study on CIFAR-10: it trains, reports the runs' own numbers, and resumes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from cnnbench.cli import main
from cnnbench.report.document import read_markdown_table as md_table
from cnnbench.study.runner import STUDY_BENCH

SMALL_STUDY = {
    "description": "two optimizers on a tiny subset",
    "base": {
        "model": "lenet5",
        "dataset": "cifar10",
        "epochs": 1,
        "batch_size": 64,
        "train_subset": 500,
        "val_size": 200,
        "test_subset": 200,
        "threads": 1,
    },
    "runs": [{"optimizer": "sgd", "lr": 0.05}, {"optimizer": "adam", "lr": 0.002}],
}
NAMES = ["lenet5-sgd-lr0.05-s0", "lenet5-adam-lr0.002-s0"]


MEASURED: list[tuple[str, bool, dict]] = []


def fake_measure_run(run_dir, quick=False, **settings):
    """Stands in for cnnbench.bench.measure_run (timed for real by tests/bench): writes a
    bench.json of made-up figures in the real format, one row per backend asked for."""
    MEASURED.append((Path(run_dir).name, quick, settings))
    p50 = 0.1 * len(MEASURED)
    rows = [{"backend": b, "device": "cpu", "threads": 1, "batch": 1, "p50_ms": p50 * (i + 1),
             "p90_ms": p50 * 1.5, "p99_ms": p50 * 2 * (i + 1), "iters": 300}
            for i, b in enumerate(settings["backends"])]  # fmt: skip
    (Path(run_dir) / "bench.json").write_text(json.dumps({"results": rows, "errors": []}))


@pytest.fixture(autouse=True, scope="module")
def _empty_zoo(tmp_path_factory):
    """No shipped zoo model joins these reports (the zoo changes as models are added)."""
    root = tmp_path_factory.mktemp("empty-zoo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cnnbench.zoo.root", lambda: root)
        yield root


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
    """The study trained once with two workers (spawned processes, one thread each)."""
    root = tmp_path_factory.mktemp("study")
    path = root / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL_STUDY))
    runs = root / "runs"
    argv = ["study", str(path), "--runs-dir", str(runs), "--workers", "2", "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cnnbench.study.runner._bench_hook", lambda: fake_measure_run)
        assert main([*argv, "--data-dir", str(data_dir)]) == 0
    return path, runs / "small", [*argv, "--no-bench", "--data-dir", str(data_dir)]


def test_latency_is_measured_once_per_trained_run(study):
    # ONNX Runtime fp32 and int8, one thread, the quick settings (a few seconds per backend)
    want = {"backends": ("onnxruntime", "onnxruntime-int8"), "threads": [1]}
    assert want == STUDY_BENCH
    assert sorted(m[:2] for m in MEASURED) == sorted((name, True) for name in NAMES)
    assert all(m[2] == want for m in MEASURED)


def _bench(*backends: str, threads: int = 1) -> dict:
    return {"results": [{"backend": b, "device": "cpu", "threads": threads, "batch": 1,
                         "p50_ms": 0.1, "p99_ms": 0.2} for b in backends]}  # fmt: skip


@pytest.mark.parametrize(
    ("bench", "measured"),
    [
        (None, True),  # never measured
        (_bench("eager", "onnxruntime"), True),  # the old quick measurement: no int8
        (_bench("onnxruntime", "onnxruntime-int8", threads=2), True),  # not one thread
        (_bench("onnxruntime", "onnxruntime-int8"), False),  # has both: kept
        ({**_bench("onnxruntime"), "errors": [{"backend": "onnxruntime-int8", "device": "cpu",
          "threads": 1, "error": "quantisation failed"}]}, False),  # tried: not retried
    ],
)  # fmt: skip
def test_finished_runs_are_measured_unless_they_have_both_backends(tmp_path, bench, measured):
    from cnnbench.study.runner import StudyResult, _measure

    run = tmp_path / "run"
    run.mkdir()
    if bench is not None:
        (run / "bench.json").write_text(json.dumps(bench))
    calls = []
    result = StudyResult(study_dir=tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cnnbench.study.runner._bench_hook", lambda: lambda *a, **k: calls.append(k))
        _measure(run, result, print)
    assert calls == ([{"quick": True, **STUDY_BENCH}] if measured else [])
    assert result.benched == (["run"] if measured else [])


def test_every_run_is_complete_and_the_study_is_recorded(study):
    _, folder, _ = study
    for name in NAMES:
        summary = json.loads((folder / name / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["train_images"] == 500
        assert summary["command"].startswith("cnnbench study ")
    recorded = yaml.safe_load((folder / "study.yaml").read_text())
    assert [r["name"] for r in recorded["runs"]] == NAMES
    assert recorded["varied"] == ["lr", "optimizer"]
    assert all(r["epochs"] == 1 and r["model"] == "lenet5" for r in recorded["runs"])


def test_report_numbers_are_the_runs_numbers(study):
    _, folder, _ = study
    report = folder / "report"
    md = (report / "report.md").read_text()
    summaries = {n: json.loads((folder / n / "summary.json").read_text()) for n in NAMES}

    rows = {r["Run"]: r for r in md_table(md, "All runs")}
    assert set(rows) == set(NAMES)
    for name, s in summaries.items():
        row = rows[name]
        assert row["Test acc %"] == f"{100 * s['test_acc']:.2f} ± {100 * s['test_acc_se']:.2f}"
        val_se = math.sqrt(s["best_val_acc"] * (1 - s["best_val_acc"]) / s["val_images"])
        assert row["Best val acc %"] == f"{100 * s['best_val_acc']:.2f} ± {100 * val_se:.2f}"
        verdict = s["did_not_learn"]
        assert row.get("Note", "") == (f"did not learn: {verdict}" if verdict else "")
        bench = json.loads((folder / name / "bench.json").read_text())["results"]
        for b, label in (("onnxruntime", "ORT fp32"), ("onnxruntime-int8", "ORT int8")):
            result = next(r for r in bench if r["backend"] == b)
            assert float(row[f"{label} p50 ms"]) == pytest.approx(result["p50_ms"], abs=5e-4)
            assert float(row[f"{label} p99 ms"]) == pytest.approx(result["p99_ms"], abs=5e-4)
        assert int(row["Params"].replace(",", "")) == s["params"]
        assert int(row["MACs"].replace(",", "")) == s["macs"]
        assert float(row["Train time s"]) == pytest.approx(s["train_time_s"], abs=0.05)
        assert float(row["Images/s"]) == pytest.approx(s["images_per_s"], abs=0.05)

    results = md_table(md, "Results")
    assert len(results) == 2
    by_opt = {r["Optimizer"]: r for r in results}
    for s in summaries.values():
        row = by_opt[s["optimizer"]]
        assert row["Test acc %"] == f"{100 * s['test_acc']:.2f} ± {100 * s['test_acc_se']:.2f}"
        assert row["n"] == "1" and row["Architecture"] == "lenet5"
    learned = [s for s in summaries.values() if not s["did_not_learn"]]
    head = md.split("## Results", 1)[0]  # the verdict: the best run that learned
    if learned:
        best = max(learned, key=lambda s: s["test_acc"])
        assert f"{100 * best['test_acc']:.2f} %" in head
        ship = md_table(md, "What to ship")  # its fp32 pick at 5 ms is one of these runs
        assert ship[-1]["Test acc %"].startswith(f"{100 * best['test_acc']:.2f} ± ")
    else:
        assert "none learned" in head and "## What to ship" not in md
    for png in ("tradeoff.png", "curves-00.png", "curves-01.png", "effect-optimizer.png"):
        assert (report / "figures" / png).stat().st_size > 5000
        assert f"figures/{png}" in md


def test_html_report_is_self_contained(study):
    _, folder, _ = study
    html = (folder / "report" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 4
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no external resource
    assert "@import" not in html and "<link" not in html
    assert "lenet5-adam-lr0.002-s0" in html


def test_interrupted_study_resumes_without_retraining_complete_runs(study, capsys):
    _, folder, argv = study
    done, cut = folder / NAMES[0], folder / NAMES[1]
    kept = {p.name: p.stat().st_mtime_ns for p in done.iterdir()}
    before = json.loads((cut / "summary.json").read_text())
    # A run killed after its last checkpoint but before its summary: metrics.jsonl torn.
    (cut / "summary.json").unlink()
    (cut / "metrics.jsonl").write_text('{"epoch": 1, "train_lo')
    capsys.readouterr()
    assert main([*argv[:4], *argv[-4:]]) == 0  # in-process this time
    out = capsys.readouterr().out
    assert "1 trained, 1 already complete, 0 failed" in out
    assert {p.name: p.stat().st_mtime_ns for p in done.iterdir()} == kept
    after = json.loads((cut / "summary.json").read_text())
    for key in ("test_acc", "best_val_acc", "best_epoch", "params", "macs"):
        assert after[key] == before[key]  # resumed from last.pt: same model, same numbers
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 1


def test_run_killed_before_its_first_checkpoint_starts_over(study, capsys):
    _, folder, argv = study
    cut = folder / NAMES[0]
    for p in cut.iterdir():
        if p.name != "config.yaml":
            p.unlink()
    capsys.readouterr()
    assert main([*argv[:4], "--no-report", *argv[-4:]]) == 0
    assert "1 trained, 1 already complete" in capsys.readouterr().out
    assert json.loads((cut / "summary.json").read_text())["status"] == "complete"


def test_report_command_rewrites_the_report(study, capsys, tmp_path):
    _, folder, _ = study
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").is_file()
    assert (tmp_path / "r" / "figures" / "tradeoff.png").is_file()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no such study folder" in capsys.readouterr().err


def test_report_of_a_folder_without_runs_is_exit_2(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no complete run" in capsys.readouterr().err


def test_shipped_quick_study_dry_run(capsys):
    repo = Path(__file__).resolve().parents[2]
    assert main(["study", str(repo / "studies" / "quick.yaml"), "--dry-run"]) == 0
    assert "15 runs" in capsys.readouterr().out
