"""Where the mean corruption accuracy shows up: the report's results table, `pick
--min-corrupted-acc`, a study's `robustness:` option, and the zoo's cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cnnbench.bench.pick import format_pick, pick
from cnnbench.cli import main
from cnnbench.robustness import ROBUSTNESS
from cnnbench.study.spec import RobustnessSpec, parse_study
from cnnbench.train import ConfigError, load_config


@pytest.fixture(autouse=True)
def own_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty zoo (the shipped one changes as models are added)."""
    root = tmp_path / "zoo"
    root.mkdir()
    monkeypatch.setattr("cnnbench.zoo.root", lambda: root)
    return root


def _run(study: Path, name: str, acc: float, *, p99: float | None = None,
         mca: float | None = None, lr: float = 0.01) -> Path:  # fmt: skip
    """A complete run (config, metrics, summary), with bench.json / robustness.json if given."""
    run = study / name
    run.mkdir(parents=True)
    cfg = load_config({"model": "lenet5", "optimizer": "sgd", "lr": lr, "epochs": 1})
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg.model_dump(mode="json"), "name": name}))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": acc}) + "\n")
    summary = {"name": name, "status": "complete", "model": "lenet5", "dataset": "cifar10",
               "optimizer": "sgd", "lr": lr, "epochs": 1, "seed": 0, "test_acc": acc,
               "test_images": 10000, "val_images": 5000, "best_val_acc": acc, "params": 62006,
               "macs": 651720, "train_time_s": 1.0, "images_per_s": 100.0,
               "test_pred_counts": [1000] * 10}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    if p99 is not None:
        row = {"backend": "onnxruntime", "device": "cpu", "threads": 1, "batch": 1,
               "p50_ms": p99 / 2, "p90_ms": p99 * 0.8, "p99_ms": p99}  # fmt: skip
        (run / "bench.json").write_text(json.dumps({"results": [row]}))
    if mca is not None:
        rob = {"mca": mca, "mca_se": 0.01, "images": 1000, "implementation": "x"}
        (run / ROBUSTNESS).write_text(json.dumps(rob))
    return run


def test_report_shows_mca_only_where_measured(tmp_path):
    from cnnbench.report import write_report
    from cnnbench.report.document import read_markdown_table

    study = tmp_path / "s"
    _run(study, "a", 0.80, lr=0.01)
    _run(study, "b", 0.70, lr=0.1)
    md = write_report(study)["markdown"].read_text()
    assert "mCA" not in read_markdown_table(md, "Results")[0]
    (study / "a" / ROBUSTNESS).write_text(json.dumps({"mca": 0.6125, "mca_se": 0.0123,
                                                       "images": 1000}))  # fmt: skip
    md = write_report(study)["markdown"].read_text()
    rows = {r["LR"]: r for r in read_markdown_table(md, "Results")}
    assert rows["0.01"]["mCA %"] == "61.25 ± 1.23" and rows["0.1"]["mCA %"] == "–"
    assert "mean corruption accuracy" in md and "1 setting not measured" in md


def test_pick_filters_on_corrupted_accuracy(tmp_path, capsys):
    study = tmp_path / "s"
    _run(study, "robust", 0.85, p99=2.0, mca=0.72)
    _run(study, "fragile", 0.92, p99=1.0, mca=0.55)
    _run(study, "unknown", 0.95, p99=1.0)
    assert pick(study, 5.0)["choice"]["run"] == "unknown"  # no minimum: accuracy decides
    res = pick(study, 5.0, min_corrupted_acc=0.7)
    assert res["choice"]["run"] == "robust" and res["choice"]["corrupted_acc"] == 0.72
    reasons = {r["run"]: r["reason"] for r in res["skipped"]}
    assert "55.00% < 70.00%" in reasons["fragile"]
    assert "cnnbench robustness" in reasons["unknown"]
    assert "corrupted 72.00%" in format_pick(res)
    assert pick(study, 5.0, min_corrupted_acc=0.9)["choice"] is None
    assert main(["pick", str(study), "--budget-ms", "5", "--min-corrupted-acc", "0.7"]) == 0
    assert "pick: robust" in capsys.readouterr().out
    assert main(["pick", str(study), "--budget-ms", "5", "--min-corrupted-acc", "70"]) == 2
    assert "fraction in [0, 1]" in capsys.readouterr().err


def test_pick_reads_a_zoo_cards_corrupted_accuracy(tmp_path, own_zoo):
    study = tmp_path / "s"
    _run(study, "mine", 0.80, p99=1.0, mca=0.5)
    entry = _run(own_zoo, "fastnet_small-cifar10", 0.91, p99=1.0)
    (entry / "zoo.json").write_text(json.dumps({"name": entry.name, "dataset": "cifar10",
                                                "robustness": {"mca": 0.66}}))  # fmt: skip
    res = pick(study, 5.0, min_corrupted_acc=0.6)
    assert res["choice"]["run"] == "zoo:fastnet_small-cifar10"
    assert res["choice"]["corrupted_acc"] == 0.66


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (True, RobustnessSpec(images=1000, seed=0)),
        ({"images": 2000, "seed": 3}, RobustnessSpec(images=2000, seed=3)),
        ({"full": True}, RobustnessSpec(images=None, seed=0)),
        (False, None),
    ],
)
def test_study_robustness_option(value, want):
    study = parse_study({"grid": {"seed": [0, 1]}, "robustness": value})
    assert study.robustness == want
    if want is not None:
        assert study.to_dict()["robustness"]["images"] == want.images
        assert want.measure_kwargs() == {"images": want.images, "seed": want.seed}
    assert parse_study({"grid": {"seed": [0]}}).robustness is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("yes please", "robustness: expected true, false or a mapping"),
        ({"imgs": 10}, "unknown option 'imgs'"),
        ({"images": 0}, "robustness.images: expected a whole number >= 1"),
        ({"images": True}, "robustness.images"),
        ({"seed": -1}, "robustness.seed"),
        ({"full": "yes"}, "robustness.full"),
        ({"full": True, "images": 100}, "not both"),
    ],
)
def test_bad_study_robustness_option_is_one_config_error(value, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        parse_study({"grid": {"seed": [0]}, "robustness": value})
    assert fragment in str(info.value)


def test_zoo_card_carries_the_mean_corruption_accuracy(tmp_path, data_dir, fake_run):
    from cnnbench.rundir import RunDir
    from cnnbench.zoo import sha256_of
    from cnnbench.zoo.build import measure_entry

    card = {**_card(), "sha256": sha256_of(fake_run / "best.pt")}
    (fake_run / "zoo.json").write_text(json.dumps(card))
    out = measure_entry(fake_run, str(data_dir), ("robustness",), robustness_images=10)
    rob = out["robustness"]
    assert (
        rob["images"] == 10
        and 0 <= rob["mca"] <= 1
        and set(rob["groups"]) == {"noise", "blur", "weather", "digital"}
    )
    assert RunDir(fake_run).zoo_card()["robustness"] == rob
    RunDir(fake_run).verify()  # a new card field leaves the weights' check intact
    assert (fake_run / ROBUSTNESS).is_file()  # zoo.build is the one writer of an entry
    assert "mean corruption accuracy" in (fake_run / "README.md").read_text()
    with pytest.raises(Exception, match="cannot measure 'speed'"):
        measure_entry(fake_run, str(data_dir), ("speed",))


def _card() -> dict:
    """The keys card_markdown reads, as `cnnbench zoo add` writes them."""
    return {"name": "fake-cifar10", "model": "lenet5", "dataset": "cifar10",
            "train_images": 1000, "val_images": 500, "test_images": 10000, "epochs": 1,
            "batch_size": 100, "seed": 0, "command": "cnnbench train", "train_time_s": 60,
            "device": "cpu", "threads": 1, "test_acc": 0.1, "best_epoch": 1,
            "params": 62006, "macs": 651720, "sha256": "0"}  # fmt: skip


def test_a_card_without_robustness_says_so():
    from cnnbench.zoo.build import card_markdown

    text = card_markdown(_card())
    assert "not measured: `cnnbench zoo measure NAME --measure robustness`" in text
