"""The report's equal-budget ranking (differences against noise) and the absent ResNet-34."""

from __future__ import annotations

import math

from cnnbench.models import create_model
from cnnbench.profile import count_macs
from cnnbench.report import load_study_data, write_report
from cnnbench.report.ranking import absent_model_note, budget_groups, ranking_note, steps

BUDGET = {"budget_minutes": 1.5}


def _equal_budget_study(study, make_run, accs, seeds=(0,)):
    for model, values in accs.items():
        for seed, acc in zip(seeds, values, strict=True):
            make_run(study, model=model, optimizer="sgd", lr=0.75, seed=seed, test_acc=acc,
                     **BUDGET)  # fmt: skip
    return load_study_data(study)


def test_steps_within_noise_and_beyond(tmp_path, make_run):
    # SE of 0.80 on 10,000 images is 0.40 points: 0.5 points apart is noise, 9.5 is not.
    data = _equal_budget_study(
        tmp_path / "s", make_run,
        {"fastnet_small": [0.80], "resnet8": [0.795], "lenet5_relu": [0.70]},
    )  # fmt: skip
    ranked = budget_groups(data)[1.5]
    assert [g.settings["model"] for g in ranked] == ["fastnet_small", "resnet8", "lenet5_relu"]
    (_, _, d1, s1), (_, _, d2, s2) = steps(ranked)
    assert math.isclose(d1, 0.005) and not s1
    assert math.isclose(d2, 0.095) and s2
    note = ranking_note(data)
    assert "fastnet_small 80.0 ≈ resnet8 79.5 > lenet5_relu 70.0" in note
    assert "within noise: fastnet_small vs resnet8 (0.5 points)" in note
    assert "one seed per setting" in note  # the ± is the test set's error only


def test_seeds_spread_decides_and_the_caveat_goes(tmp_path, make_run):
    # two seeds each: a mean difference of 2 points with a 3-point spread is noise
    data = _equal_budget_study(
        tmp_path / "s", make_run,
        {"fastnet_small": [0.82, 0.78], "resnet8": [0.76, 0.80]}, seeds=(0, 1),
    )  # fmt: skip
    note = ranking_note(data)
    assert "fastnet_small 80.0 ≈ resnet8 78.0" in note and "one seed" not in note


def test_runs_that_did_not_learn_or_without_budget_are_not_ranked(tmp_path, make_run):
    study = tmp_path / "s"
    make_run(study, model="fastnet_small", test_acc=0.8, **BUDGET)
    make_run(study, model="mobilenetv2_x0_5", test_acc=0.1, **BUDGET)  # chance: did not learn
    make_run(study, model="lenet5", test_acc=0.5)  # no budget: another part of the study
    data = load_study_data(study)
    assert [g.settings["model"] for g in budget_groups(data)[1.5]] == ["fastnet_small"]
    assert ranking_note(data) is None  # one model is not a ranking


def test_the_report_says_why_resnet34_is_absent(tmp_path, make_run):
    study = tmp_path / "s"
    make_run(study, model="fastnet_small", test_acc=0.8, macs=33_066_272, images_per_s=1200.0,
             **BUDGET)  # fmt: skip
    data = load_study_data(study)
    note = absent_model_note(data)
    macs = count_macs(create_model("resnet34"))
    img_s = 1200.0 * 33_066_272 / macs
    assert f"{macs / 1e9:.2f} G MACs" in note
    assert f"about {img_s:,.0f} images/s" in note
    assert f"{45_000 / img_s / 60:,.0f} minutes per epoch of 45,000 images" in note
    assert f"{img_s * 90:,.0f} images in a 1.5-minute budget" in note
    md = write_report(study)["markdown"].read_text()
    assert "**ResNet-34**, the study's largest model" in md
    assert "**Equal-budget ranking**" not in md  # one budget run: nothing to rank


def test_no_resnet34_note_when_it_was_trained(tmp_path, make_run):
    study = tmp_path / "s"
    make_run(study, model="fastnet_small", test_acc=0.8)
    make_run(study, model="resnet34", test_acc=0.7)
    assert absent_model_note(load_study_data(study)) is None
