"""The zoo: entries built from real runs, hash-checked weights, cards that re-measure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from cnnbench import zoo
from cnnbench.models import create_model
from cnnbench.rundir import RunDir, RunDirError, resolve, sha256_of
from cnnbench.train import load_config, train
from cnnbench.zoo.build import CHECK_SUBSET, add_run, measure_test_accuracy

SHIPPED = zoo.names()


@pytest.fixture(scope="module")
def tmp_zoo(data_dir, tmp_path_factory):
    """A zoo folder with one entry built from a small real run (no latency measurement)."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config({"model": "lenet5_relu", "data_dir": str(data_dir), "epochs": 1,
                       "train_subset": 1000, "val_size": 500, "test_subset": 500,
                       "batch_size": 100, "optimizer": "adam", "lr": 0.002, "threads": 1,
                       "name": "small"})  # fmt: skip
    train(cfg, runs_dir=runs, progress=False)
    root = tmp_path_factory.mktemp("zoo")
    card = add_run(runs / "small", "lenet5_relu-cifar10", zoo_root=root, measure=False)
    return root, card, runs / "small"


def test_entry_is_a_run_directory_with_a_card(tmp_zoo):
    root, card, run = tmp_zoo
    entry = RunDir(root / card["name"])
    assert entry.is_complete() and entry.zoo_card() == card
    assert card["sha256"] == sha256_of(entry.checkpoint_path("best"))
    ckpt = entry.load_checkpoint()
    assert "optimizer" not in ckpt and ckpt["model_spec"]["name"] == "lenet5_relu"
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert card["test_acc"] == json.loads((run / "summary.json").read_text())["test_acc"]
    assert "lenet5_relu-cifar10" in (root / card["name"] / "README.md").read_text()


def test_entry_is_never_overwritten(tmp_zoo):
    root, card, run = tmp_zoo
    with pytest.raises(RunDirError, match="--force"):
        add_run(run, card["name"], zoo_root=root, measure=False)


def test_a_replaced_entry_keeps_nothing_of_the_old_one(tmp_zoo, tmp_path):
    _, card, run = tmp_zoo
    add_run(run, "entry", zoo_root=tmp_path, measure=False)
    (tmp_path / "entry" / "bench.json").write_text("{}")  # measurements of the old weights
    (tmp_path / "entry" / "robustness").mkdir()
    replaced = add_run(run, "entry", zoo_root=tmp_path, force=True, measure=False)
    assert replaced["sha256"] == card["sha256"]
    assert not (tmp_path / "entry" / "bench.json").exists()
    assert not (tmp_path / "entry" / "robustness").exists()
    with pytest.raises(RunDirError, match="plain folder name"):
        add_run(run, "../outside", zoo_root=tmp_path, force=True, measure=False)


def test_latency_ratio_is_of_the_entrys_model_and_on_its_card(tmp_zoo, tmp_path, monkeypatch):
    from cnnbench.bench import interleaved
    from cnnbench.zoo.build import _reference_ratio, card_markdown, measure_entry

    root, card, _ = tmp_zoo
    seen = {}

    def fake_ratio(model, *, input_size):
        seen.update(name=model.cnnbench_spec["name"], training=model.training, size=input_size)
        return {"reference": "mobilenetv2", "p50_ms": 0.1, "p99_ms": 0.2,
                "reference_p50_ms": 2.0, "reference_p99_ms": 3.0, "ratio": 0.05,
                "iters": 2000, "rounds": 10}  # fmt: skip

    monkeypatch.setattr(interleaved, "reference_ratio", fake_ratio)
    ref = _reference_ratio(root / card["name"])
    assert seen == {"name": "lenet5_relu", "training": False, "size": (3, 32, 32)}
    text = card_markdown({**card, "latency": {"reference": ref}})
    assert "0.05x: fp32 p50 0.100 ms against mobilenetv2's 2.000 ms" in text
    assert "latency against MobileNetV2 | - (not measured" in card_markdown(card)

    # `zoo measure --measure ratio` adds it to a card and keeps the latencies already there
    entry = tmp_path / card["name"]
    shutil.copytree(root / card["name"], entry)
    measured = {**card, "latency": {"onnxruntime": {"p50_ms": 0.3, "p99_ms": 0.4}}}
    (entry / "zoo.json").write_text(json.dumps(measured))
    measure_entry(entry, what=("ratio",))
    on_disk = RunDir(entry).zoo_card()["latency"]
    assert on_disk == {"onnxruntime": {"p50_ms": 0.3, "p99_ms": 0.4}, "reference": ref}
    assert "0.05x" in (entry / "README.md").read_text()


def test_shipped_weights_remeasure(tmp_zoo, data_dir):
    root, card, _ = tmp_zoo
    entry = root / card["name"]
    assert (
        measure_test_accuracy(entry, str(data_dir), CHECK_SUBSET)
        == card["check_subset"]["test_acc"]
    )
    # the card's full-test-split figure is reproducible from the shipped weights
    assert card["shipped_test_acc"] == measure_test_accuracy(entry, str(data_dir))


def test_tampered_weights_are_refused(tmp_zoo, tmp_path):
    root, card, _ = tmp_zoo
    copy = tmp_path / card["name"]
    copy.mkdir()
    for f in (root / card["name"]).iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    raw = bytearray((copy / "best.pt").read_bytes())
    raw[-100] ^= 0xFF
    (copy / "best.pt").write_bytes(bytes(raw))
    with pytest.raises(RunDirError, match="does not match its card"):
        RunDir(copy).load_checkpoint()


def test_zoo_names_resolve_and_create_model_pretrained(tmp_zoo, monkeypatch):
    root, card, _ = tmp_zoo
    monkeypatch.setattr(zoo, "root", lambda: root)
    assert zoo.names() == [card["name"]]
    assert resolve(card["name"]).path == root / card["name"]
    assert resolve("zoo:" + card["name"]).path == root / card["name"]
    with pytest.raises(RunDirError, match="zoo"):
        resolve("no-such-model")
    model = create_model("lenet5_relu", pretrained="cifar10")
    assert not model.training and model.num_classes == 10
    want = RunDir(root / card["name"]).load_checkpoint()["model"]["head.weight"].float()
    torch.testing.assert_close(model.head.weight, want)
    assert create_model("lenet5_relu", pretrained="cifar10", num_classes=3).num_classes == 3
    with pytest.raises(ValueError, match="no pretrained"):
        create_model("resnet8", pretrained="cifar10")


def test_cli_lists_the_zoo():
    out = subprocess.run([sys.executable, "-m", "cnnbench", "zoo"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    for name in SHIPPED:
        assert name in out


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_matches_its_weights(name, data_dir):
    entry = RunDir(zoo.find(name))
    card = entry.zoo_card()
    assert card["sha256"] == sha256_of(entry.checkpoint_path("best"))
    got = measure_test_accuracy(entry.path, str(data_dir), card["check_subset"]["images"])
    assert abs(got - card["check_subset"]["test_acc"]) <= 0.001 + 1e-9  # 0.1 point
    assert abs(card["shipped_test_acc"] - card["test_acc"]) <= 0.001 + 1e-9
    assert entry.checkpoint_path("best").stat().st_size <= 10 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_each_cards_create_model_line_loads_that_entry(name):
    """The card's "Use it" line works as written, also for an entry whose builder has
    arguments (fastnet_24_96-cifar10 is `fastnet` with widths: create_model("fastnet", ...)
    would find no entry)."""
    import re

    text = (zoo.root() / name / "README.md").read_text()
    (model, dataset), *_ = re.findall(r'create_model\("([^"]+)", pretrained="([^"]+)"\)', text)
    net = create_model(model, pretrained=dataset)
    want = RunDir(zoo.root() / name).load_checkpoint()["model"]["head.weight"].float()
    torch.testing.assert_close(net.head.weight, want)


def test_a_distilled_entrys_card_names_its_teacher_and_what_it_cost(tmp_zoo):
    from cnnbench.zoo.build import card_markdown

    _, card, _ = tmp_zoo
    assert "distilled from" not in card_markdown(card)
    facts = {"teacher": "fastnet_base-cifar10", "teacher_model": "fastnet", "images": 45000,
             "teacher_sha256": "ab" * 32, "alpha": 0.9, "temperature": 4.0, "seconds": 61.4}  # fmt: skip
    text = card_markdown({**card, "distill": facts})
    assert (
        "| distilled from | `fastnet_base-cifar10` (fastnet, best.pt sha256 `abababababab`)" in text
    )
    assert "45,000 training images took 61 s inside the budget" in text
