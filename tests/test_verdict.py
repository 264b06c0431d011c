"""The "did not learn" verdict: a binomial test against chance and collapsed predictions."""

from __future__ import annotations

import pytest

from cnnbench.verdict import chance_p_value, collapsed, did_not_learn


def _summary(acc: float, counts: list[int], n: int = 10_000) -> dict:
    return {"test_images": n, "test_acc": acc, "test_pred_counts": counts}


def test_a_model_well_above_chance_with_spread_predictions_learned():
    assert did_not_learn(_summary(0.40, [1000] * 10)) is None


def test_exactly_chance_is_flagged():
    reason = did_not_learn(_summary(0.10, [1000] * 10))
    assert reason is not None and "not above chance" in reason


def test_one_class_for_every_image_is_flagged():
    # 10.00 % with every prediction in one class: the quick study's old LeNet-5 + SGD
    reason = did_not_learn(_summary(0.1, [10_000] + [0] * 9))
    assert reason is not None


def test_collapse_is_flagged_even_above_chance():
    counts = [6000, 3000, 1000] + [0] * 7
    assert "one class" in collapsed(counts)
    assert did_not_learn(_summary(0.25, counts)) is not None
    assert "3 of 10" in collapsed([3000, 3000, 4000] + [0] * 7)


def test_small_test_sets_need_more_than_a_lucky_margin():
    # 12 % of 200 images is within chance for 10 classes; 30 % is not
    assert did_not_learn(_summary(0.12, [20] * 10, n=200)) is not None
    assert did_not_learn(_summary(0.30, [20] * 10, n=200)) is None


def test_p_value_is_exact_binomial():
    assert chance_p_value(1, 1, 2) == pytest.approx(0.5)
    assert chance_p_value(0, 10, 10) == pytest.approx(1.0)
    assert chance_p_value(10, 10, 2) == pytest.approx(0.5**10)


def test_unknown_is_not_a_verdict():
    assert did_not_learn({}) is None
    assert did_not_learn({"test_images": 100, "test_acc": float("nan")}) is None
