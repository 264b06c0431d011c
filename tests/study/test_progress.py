"""The study's progress: runs weighed by their expected cost, one line per run off a terminal."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnbench.study import runner
from cnnbench.study.runner import StudyProgress, StudyResult, _train, expected_cost
from cnnbench.train import load_config

BASE = {"model": "lenet5", "dataset": "cifar10", "epochs": 2, "train_subset": 10_000,
        "val_size": 5000, "test_subset": 1000}  # fmt: skip


def cost(**settings) -> float:
    return expected_cost(load_config({**BASE, **settings}))


def test_cost_is_linear_in_epochs_and_grows_with_images_and_macs():
    per_epoch = cost(epochs=3) - cost(epochs=2)
    assert per_epoch > 0
    assert cost(epochs=20) - cost(epochs=2) == pytest.approx(18 * per_epoch)
    # training images count forward and backward (3x), validation images forward only
    more = cost(epochs=3, train_subset=20_000) - cost(epochs=2, train_subset=20_000)
    assert more / per_epoch == pytest.approx((3 * 20_000 + 5000) / (3 * 10_000 + 5000))
    # resnet8 has ~20x the MACs of LeNet-5 at 32x32
    dear = cost(model="resnet8", epochs=3) - cost(model="resnet8", epochs=2)
    assert dear > 10 * per_epoch


def test_a_budget_run_costs_its_budget():
    one = expected_cost(load_config({**BASE, "budget_minutes": 1.0}))
    four = expected_cost(load_config({**BASE, "budget_minutes": 4.0}))
    assert four - one == pytest.approx(180.0)  # seconds: three more minutes of training


def test_a_resumed_run_costs_what_is_left_and_a_complete_one_nothing(tmp_path):
    config = load_config({**BASE, "epochs": 4})
    run = tmp_path / "r"
    run.mkdir()
    new = expected_cost(config, run)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2)))
    half = expected_cost(config, run)
    assert new - half == pytest.approx(cost(epochs=4) - cost(epochs=2))  # two epochs fewer
    (run / "summary.json").write_text(json.dumps({"status": "complete"}))
    assert expected_cost(config, run) == 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_after_a_cheap_first_run_weighs_the_runs_left(monkeypatch):
    # The case: a cheap run first, then an expensive one. Counting runs says the
    # study is half done after the cheap one; weighing them says a tenth.
    clock = Clock()
    monkeypatch.setattr(runner.time, "monotonic", clock)
    lines: list[str] = []
    bar = StudyProgress("s", {"cheap": 10.0, "dear": 90.0}, [], True, lines.append, terminal=False)
    clock.now += 5.0
    bar.finished("cheap")
    assert lines == ["study s: cheap done, 1/2 runs, 10% of the work, about 00:45 left"]
    clock.now += 45.0
    bar.finished("dear")
    assert lines[-1] == "study s: dear done, 2/2 runs, 100% of the work"
    bar.close()


def test_runs_complete_before_the_study_started_do_not_speed_up_the_eta(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(runner.time, "monotonic", clock)
    lines: list[str] = []
    costs = {"old": 50.0, "a": 25.0, "b": 25.0}
    bar = StudyProgress("s", costs, ["old"], True, lines.append, terminal=False)
    clock.now += 10.0
    bar.finished("a")
    assert lines == ["study s: a done, 2/3 runs, 75% of the work, about 00:10 left"]


@given(st.lists(st.floats(0.1, 1e4), min_size=1, max_size=8))
def test_the_terminal_bar_shows_the_weighted_share_and_counts_runs(costs):
    named = {f"r{i}": c for i, c in enumerate(costs)}
    first = costs[0] / sum(costs)
    screen = io.StringIO()
    with redirect_stderr(screen):
        bar = StudyProgress("s", named, [], True, lambda m: None, terminal=True)
        bar.finished("r0")
        bar.bar.refresh()
        shown = screen.getvalue().split("\r")[-1]
        assert f"{100 * first:3.0f}%|" in shown and f" 1/{len(costs)} runs [" in shown
        for name in list(named)[1:]:
            bar.finished(name)
        assert bar.bar.n == pytest.approx(sum(costs))
        bar.close()
    assert "100%|" in screen.getvalue().split("\r")[-1]


class _Scripted:
    one_at_a_time = True

    def run(self, wave):
        for config in wave:
            yield config.run_name(), None


def test_off_a_terminal_each_finished_run_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_bench_hook", lambda: None)
    runs = [load_config({**BASE, "name": n}) for n in ("a", "b", "c")]
    lines: list[str] = []
    costs = {c.run_name(): expected_cost(c) for c in runs}
    with StudyProgress("s", costs, [], True, lines.append, terminal=False) as bar:
        _train(_Scripted(), runs, tmp_path, StudyResult(study_dir=tmp_path), bar, lines.append)
    assert [line.split(",")[0] for line in lines] == [
        "study s: a done",
        "study s: b done",
        "study s: c done",
    ]
    assert all("\r" not in line for line in lines)
    quiet: list[str] = []
    with StudyProgress("s", costs, [], False, quiet.append, terminal=False) as bar:
        _train(_Scripted(), runs, tmp_path, StudyResult(study_dir=tmp_path), bar, quiet.append)
    assert quiet == []  # --quiet: nothing
