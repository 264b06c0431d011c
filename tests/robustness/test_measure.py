"""mCA, the drop, group means and their standard errors; measuring a model whose accuracy is
known; measuring a run and writing robustness.json, never into a zoo model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cnnbench.robustness import IMPLEMENTATION, ROBUSTNESS, is_measured, read_robustness
from cnnbench.robustness.measure import RobustnessError, measure, measure_run, subset, summarise
from cnnbench.rundir import RunDirError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_summary_arithmetic_on_known_correctness():
    t, f = True, False
    correct = {
        ("gaussian_noise", 1): np.array([t, t, f, f]),
        ("gaussian_noise", 2): np.array([t, f, f, f]),
        ("contrast", 1): np.array([t, t, t, f]),
        ("contrast", 2): np.array([t, t, t, t]),
    }
    clean = np.array([t, t, t, f])
    r = summarise(correct, clean, ("gaussian_noise", "contrast"), (1, 2))
    assert r["images"] == 4
    assert r["clean_acc"] == 0.75 and r["clean_acc_se"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert r["mca"] == pytest.approx(0.625)  # (0.5 + 0.25 + 0.75 + 1) / 4
    per_image = np.array([1, 0.75, 0.5, 0.25])  # each image's accuracy over the 4 cells
    assert r["mca_se"] == pytest.approx(per_image.std(ddof=1) / 2)
    assert r["drop"] == pytest.approx(0.125)
    assert r["relative_drop"] == pytest.approx(1 - 0.625 / 0.75)
    z = per_image - (0.625 / 0.75) * clean
    assert r["relative_drop_se"] == pytest.approx(z.std(ddof=1) / (0.75 * 2))
    assert r["groups"]["noise"]["acc"] == pytest.approx(0.375)
    assert r["groups"]["digital"]["acc"] == pytest.approx(0.875)
    assert r["groups"]["digital"]["corruptions"] == ["contrast"]
    assert set(r["groups"]) == {"noise", "digital"}
    cell = r["per_corruption"]["gaussian_noise"]["severity"]["1"]
    assert cell == {"acc": 0.5, "se": pytest.approx(0.25)}
    assert r["per_corruption"]["contrast"]["acc"] == pytest.approx(0.875)
    assert r["per_severity"]["1"]["acc"] == pytest.approx(0.625)


def test_a_missing_cell_is_an_error():
    with pytest.raises(RobustnessError, match="contrast at severity 2"):
        summarise({("contrast", 1): np.ones(3, bool)}, np.ones(3, bool), ("contrast",), (1, 2))


def test_no_clean_accuracy_gives_no_relative_drop():
    r = summarise({("fog", 1): np.zeros(3, bool)}, np.zeros(3, bool), ("fog",), (1,))
    assert r["mca"] == 0 and r["relative_drop"] is None


def test_a_constant_model_loses_nothing(make_images, constant_model):
    x = torch.from_numpy(make_images(8).transpose(0, 3, 1, 2).copy())
    y = torch.tensor([0, 0, 0, 1, 2, 3, 0, 5])  # the model is right on class 0: 4 of 8
    lines = []
    r, samples = measure(constant_model(0), x, y, MEAN, STD, corruptions=["fog", "contrast"],
                         severities=[1, 5], progress=lines.append)  # fmt: skip
    assert r["clean_acc"] == 0.5 and r["mca"] == 0.5
    assert r["drop"] == 0 and r["relative_drop"] == 0
    assert set(r["per_corruption"]) == {"fog", "contrast"}
    assert r["cache"] == {"hits": 0, "misses": 4, "used": True} and len(lines) == 4
    assert samples["clean"].shape == (32, 32, 3) and set(samples["cells"]) == {
        ("fog", 1),
        ("fog", 5),
        ("contrast", 1),
        ("contrast", 5),
    }
    again, _ = measure(constant_model(0), x, y, MEAN, STD, corruptions=["fog", "contrast"],
                       severities=[1, 5])  # fmt: skip
    assert again["cache"]["hits"] == 4 and again["mca"] == r["mca"]


def test_measure_refuses_other_images(constant_model):
    x = torch.zeros(2, 3, 28, 28, dtype=torch.uint8)
    with pytest.raises(RobustnessError, match="32, 32"):
        measure(constant_model(0), x, torch.zeros(2, dtype=torch.long), MEAN, STD)
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        measure(constant_model(0), x, torch.zeros(2, dtype=torch.long), MEAN, STD,
                corruptions=["rain"])  # fmt: skip


def test_subset_is_seeded_stratified_and_sorted():
    y = torch.arange(100) % 10
    a, b, c = subset(y, 20, 0), subset(y, 20, 0), subset(y, 20, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, a.sort().values)
    assert torch.bincount(y[a], minlength=10).tolist() == [2] * 10
    assert torch.equal(subset(y, None, 0), torch.arange(100))
    assert torch.equal(subset(y, 500, 0), torch.arange(100))
    with pytest.raises(RobustnessError, match=">= 1"):
        subset(y, 0, 0)


def test_measure_run_writes_its_file_and_figures(fake_run, data_dir):
    r = measure_run(fake_run, images=20, data_dir=str(data_dir),
                    corruptions=["gaussian_noise", "contrast"], severities=[1, 5])  # fmt: skip
    path = fake_run / ROBUSTNESS
    assert r["written"] == str(path)
    saved = json.loads(path.read_text())
    assert saved["images"] == 20 and not saved["full"] and saved["test_images"] == 10000
    assert saved["implementation"] == IMPLEMENTATION and saved["model"] == "lenet5"
    assert saved["mca"] == r["mca"] and 0 <= saved["mca"] <= 1
    assert saved["environment"]["loadavg_start"] is not None
    for name in ("heatmap", "samples"):
        assert (fake_run / saved["figures"][name]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_robustness(fake_run)["mca"] == r["mca"]
    # two corruptions are not the protocol: a study would measure this run again
    assert not is_measured(fake_run, images=20)


def test_a_zoo_model_is_never_written_into(fake_run, data_dir, tmp_path):
    from cnnbench.zoo import sha256_of

    card = {"name": "fake", "sha256": sha256_of(fake_run / "best.pt")}
    (fake_run / "zoo.json").write_text(json.dumps(card))
    kw = {"images": 10, "data_dir": str(data_dir), "corruptions": ["fog"], "severities": [2],
          "figures": False}  # fmt: skip
    r = measure_run(fake_run, **kw)
    assert r["written"] is None and not (fake_run / ROBUSTNESS).exists()
    r = measure_run(fake_run, out_dir=tmp_path / "out", **kw)
    assert r["written"] == str(tmp_path / "out" / ROBUSTNESS)


def test_a_bad_run_is_one_clear_error(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        measure_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a trained run"):
        measure_run(tmp_path / "empty")


def _report(**kw):
    from cnnbench.robustness import CORRUPTIONS, SEVERITIES

    return {"implementation": IMPLEMENTATION, "seed": 0, "corruptions": list(CORRUPTIONS),
            "severities": list(SEVERITIES), "images": 1000, "test_images": 10000,
            "full": False, "mca": 0.7, **kw}  # fmt: skip


def test_is_measured_compares_the_protocol(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert not is_measured(run)
    (run / ROBUSTNESS).write_text(json.dumps(_report()))
    assert is_measured(run) and is_measured(run, images=1000, seed=0)
    assert not is_measured(run, images=2000) and not is_measured(run, seed=1)
    assert not is_measured(run, images=None)
    (run / ROBUSTNESS).write_text(json.dumps(_report(images=10000, full=True)))
    assert is_measured(run, images=None) and is_measured(run, images=20000)
    (run / ROBUSTNESS).write_text(json.dumps(_report(implementation="old/0")))
    assert not is_measured(run)


def test_a_zoo_card_summary_reads_back(tmp_path):
    from cnnbench.robustness import card_summary, corrupted_accuracy

    entry = tmp_path / "entry"
    entry.mkdir()
    summary = card_summary(_report(groups={"noise": {"acc": 0.4, "se": 0.01}}))
    assert summary["groups"] == {"noise": 0.4} and summary["mca"] == 0.7
    (entry / "zoo.json").write_text(json.dumps({"name": "x", "robustness": summary}))
    assert corrupted_accuracy(entry) == 0.7
    assert corrupted_accuracy(tmp_path) is None
