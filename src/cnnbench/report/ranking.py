"""What the report says about the order of the equal-budget runs, and about absent models.

Two sentences a reader needs before acting on the results table:

- **Is the ranking real?** Runs trained to the same ``budget_minutes`` are ranked by test
  accuracy, and each step of the ranking is called a difference only when it exceeds
  ``Z`` times the combined uncertainty of the two accuracies (the binomial standard error of
  one run, or the spread over seeds); smaller steps are "within noise". With one seed the
  uncertainty is the test set's sampling error only, not the seed-to-seed spread of training,
  and the text says so.
- **Why is ResNet-34 not there?** The study this project starts from trains a ResNet-34; when
  neither the study nor the zoo has one, its cost is estimated from what this machine did: the
  best multiply-accumulate throughput of the study's runs (training images/s x MACs per
  image), divided by ResNet-34's MACs, gives how many images a budget would show it.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from cnnbench.report.collect import Group, StudyData

Z = 1.96  # two-sided 95 %: a step smaller than Z x the combined error is within noise
ABSENT_MODEL = "resnet34"  # the study's model that a CPU budget cannot train


def _acc(g: Group) -> tuple[float, float] | None:
    acc, (err, _) = g.mean("test_acc"), g.acc_error()
    if acc is None or err is None or not math.isfinite(acc) or not math.isfinite(err):
        return None
    return acc, err


def budget_groups(data: StudyData) -> dict[float, list[Group]]:
    """budget_minutes -> the settings trained to it that learned, best test accuracy first."""
    out: dict[float, list[Group]] = defaultdict(list)
    for g in data.groups:
        budget = g.settings.get("budget_minutes")
        if budget is None:
            budget = (g.runs[0].summary or {}).get("budget_minutes")
        if budget is not None and not g.did_not_learn and _acc(g) is not None:
            out[float(budget)].append(g)
    for groups in out.values():
        groups.sort(key=lambda g: -_acc(g)[0])  # type: ignore[index]
    return dict(out)


def steps(groups: list[Group]) -> list[tuple[Group, Group, float, bool]]:
    """(better, next, difference, significant) for each adjacent pair of a ranking."""
    out = []
    for a, b in itertools.pairwise(groups):
        (acc_a, err_a), (acc_b, err_b) = _acc(a), _acc(b)  # type: ignore[misc]
        diff = acc_a - acc_b
        out.append((a, b, diff, diff > Z * math.hypot(err_a, err_b)))
    return out


def _ranking_text(groups: list[Group]) -> str:
    """``a 81.3 > b 70.5 ≈ c 69.9 (within noise: b vs c (0.6 points))`` for one budget."""
    text = f"{groups[0].settings['model']} {100 * _acc(groups[0])[0]:.1f}"  # type: ignore[index]
    ties = []
    for a, b, diff, significant in steps(groups):
        text += f" {'>' if significant else '≈'} {b.settings['model']} {100 * _acc(b)[0]:.1f}"  # type: ignore[index]
        if not significant:
            ties.append(f"{a.settings['model']} vs {b.settings['model']} ({100 * diff:.1f} points)")
    verdict = f"within noise: {'; '.join(ties)}" if ties else "every step is larger than the noise"
    return f"{text} ({verdict})"


def ranking_note(data: StudyData) -> str | None:
    """The equal-budget ranking with each step called a difference or within noise."""
    ranked = {b: gs for b, gs in sorted(budget_groups(data).items()) if len(gs) >= 2}
    if not ranked:
        return None
    parts = [f"at {budget:g} min: {_ranking_text(groups)}" for budget, groups in ranked.items()]
    one_seed = all(len(g.runs) == 1 for gs in ranked.values() for g in gs)
    caveat = (
        " With one seed per setting the ± is the test set's sampling error only; the spread "
        "between training seeds is not in it (give the runs `seeds: [0, 1]` to measure it)."
        if one_seed
        else ""
    )
    return (
        "**Equal-budget ranking** (test accuracy %, models that learned; a step counts when "
        f"it exceeds {Z:g} x the combined uncertainty of the two accuracies, else ≈): "
        + "; ".join(parts)
        + "."
        + caveat
    )


def _resnet34_macs() -> int:
    """ResNet-34's MACs per 32x32 image (the head's share of 10 or 100 classes is < 0.01 %)."""
    from cnnbench.models import create_model
    from cnnbench.profile import count_macs

    return count_macs(create_model(ABSENT_MODEL))


def absent_model_note(data: StudyData) -> str | None:
    """Why the study's ResNet-34 is neither trained here nor in the zoo, with its estimated cost."""
    if not data.groups:
        return None
    models = {str(g.settings.get("model")) for g in data.groups} | {z.model for z in data.zoo}
    datasets = {str(g.settings.get("dataset") or g.runs[0].summary.get("dataset"))
                for g in data.groups}  # fmt: skip
    if ABSENT_MODEL in models or not datasets <= {"cifar10", "cifar100"}:
        return None
    rates = [
        (g.mean("images_per_s") or 0.0) * (g.mean("macs") or 0.0)
        for g in data.groups
        if not g.did_not_learn
    ]
    rate = max(rates, default=0.0)  # MACs per second of training, forward only
    macs = _resnet34_macs()
    n_train = max(int(g.runs[0].summary.get("train_images") or 0) for g in data.groups)
    text = (
        f"**ResNet-34**, the study's largest model ({macs / 1e9:.2f} G MACs per 32x32 image), "
        "is not among these runs and has no zoo entry: on a CPU it costs too much to train "
        "in a demo or to answer a millisecond budget."
    )
    if rate > 0:
        img_s = rate / macs
        text += (
            f" At the best training throughput of this study's runs ({rate / 1e9:.0f} G "
            f"forward MACs/s), it would train at about {img_s:,.0f} images/s"
        )
        if n_train:
            text += f": {n_train / img_s / 60:,.0f} minutes per epoch of {n_train:,} images"
        budgets = sorted(budget_groups(data))
        if budgets:
            text += f", {img_s * budgets[0] * 60:,.0f} images in a {budgets[0]:g}-minute budget"
        text += ". Its batch-1 latency would scale with its MACs (see `cnnbench bench resnet34`)."
    return text
