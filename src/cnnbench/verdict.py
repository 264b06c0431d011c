"""Did a run learn? The check that keeps a failed run out of every ranking and recommendation.

A run "did not learn" when its test accuracy is not significantly above chance (a one-sided
exact binomial test against ``1 / num_classes`` at ``ALPHA``), or when its predictions
collapsed onto a few classes (one class takes more than half of all predictions, or fewer
than half of the classes are predicted for at least 1 % of the images). The verdict is a
short reason a report can print, or None when the run learned.
"""

from __future__ import annotations

import math
from typing import Any

ALPHA = 1e-3  # significance level of the test against chance
MIN_SHARE = 0.01  # a class "is predicted" when it gets at least this share of predictions


def chance_p_value(correct: int, n: int, num_classes: int) -> float:
    """P(at least ``correct`` of ``n`` right by guessing uniformly among ``num_classes``)."""
    from scipy.stats import binomtest

    return float(binomtest(correct, n, 1.0 / num_classes, alternative="greater").pvalue)


def collapsed(pred_counts: list[int]) -> str | None:
    """Why the predictions count as collapsed, or None."""
    total = sum(pred_counts)
    k = len(pred_counts)
    if total == 0 or k < 2:
        return None
    top = max(pred_counts)
    if top > total / 2:
        return f"one class takes {top / total:.0%} of the predictions"
    used = sum(c >= MIN_SHARE * total for c in pred_counts)
    if used < math.ceil(k / 2):
        return f"only {used} of {k} classes are ever predicted"
    return None


def did_not_learn(summary: dict[str, Any], num_classes: int | None = None) -> str | None:
    """The reason ``summary``'s run did not learn, or None if it did (or cannot be told)."""
    n, acc = summary.get("test_images"), summary.get("test_acc")
    counts = summary.get("test_pred_counts")
    k = num_classes or (len(counts) if counts else None)
    if not n or acc is None or acc != acc or not k:
        return None
    p = chance_p_value(round(acc * n), int(n), int(k))
    if p >= ALPHA:
        return f"test accuracy {acc:.2%} is not above chance ({1 / k:.0%}; binomial p = {p:.2g})"
    return collapsed(counts) if counts else None


def recorded_verdict(summary: dict[str, Any], num_classes: int | None = None) -> str | None:
    """The summary's own ``did_not_learn`` (None: it learned); computed for summaries that
    predate the key, and None when a hand-made summary's values cannot be judged."""
    if "did_not_learn" in summary:
        reason = summary["did_not_learn"]
        return str(reason) if reason else None
    try:
        return did_not_learn(summary, num_classes)
    except (TypeError, ValueError):
        return None
