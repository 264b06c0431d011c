"""A budget run re-plans its epochs when its real epochs miss the timed estimate: the rule,
the schedule that continues from where it was, the record in config.yaml, and exact resume."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.train import ConfigError, load_checkpoint, load_config, train
from cnnbench.train import budget as budget_mod
from cnnbench.train.budget import REPLAN_TOLERANCE, replan
from cnnbench.train.optim import build_scheduler, decay_progress, lr_factor

# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "epoch", "epochs", "epoch_s", "want"),
    [(30, 3, 10, 10, None),  # on plan: 30 + 7 * 10 = 100
     (30, 3, 10, 10.4, None),  # 102.8: inside the tolerance
     (30, 3, 10, 12, 8),  # 114: over, keep the 5 whole epochs that fit in the 70 s left
     (30, 3, 10, 8, 11),  # 86: the 8 epochs that fit in 70 s
     (30, 3, 10, 9.5, None),  # 96.5: an 8th epoch (76 s) would not fit with room to spare
     (95, 3, 10, 10, 4),  # over already: one more epoch so that the schedule can end
     (130, 3, 10, 10, 4)],
)  # fmt: skip
def test_replan_cases(spent, epoch, epochs, epoch_s, want):
    assert replan(100, spent, epoch, epochs, epoch_s) == want


@given(budget=st.floats(10, 1e4), frac=st.floats(0, 1.5), epochs=st.integers(2, 400),
       data=st.data(), ratio=st.floats(0.2, 5))  # fmt: skip
@settings(deadline=None)  # pure arithmetic
def test_replan_lands_inside_the_budget(budget, frac, epochs, data, ratio):
    epoch = data.draw(st.integers(1, epochs - 1))
    spent = budget * frac
    epoch_s = ratio * budget / epochs  # the real epochs: ratio x what the first plan assumed
    new = replan(budget, spent, epoch, epochs, epoch_s)
    final = epochs if new is None else new
    assert final > epoch  # the schedule always gets at least one more epoch to end on
    projected = spent + (final - epoch) * epoch_s
    if final > epoch + 1:  # more than the one epoch that is always left
        assert projected <= budget * (1 + REPLAN_TOLERANCE) + 1e-6
    if new is not None and new > epochs:  # it only grows a plan that then still fits
        assert projected <= budget + 1e-6


def test_replan_rejects_nonsense():
    for args in [(100, 0, 0, 10, 1.0), (100, 0, 10, 10, 1.0), (100, 0, 3, 10, 0.0)]:
        with pytest.raises(ValueError):
            replan(*args)


# --- the schedule across a re-plan -------------------------------------------------------------


def test_decay_continues_from_where_it_was_to_the_new_end():
    kw = {"total": 100, "warmup": 10, "schedule": "linear", "steps_per_epoch": 10,
          "step_every": 30, "step_gamma": 0.1}  # fmt: skip
    before = [lr_factor(s, **kw) for s in range(101)]
    after = [lr_factor(s, **kw, replans=[(40, 70)]) for s in range(101)]
    assert after[:41] == before[:41]  # nothing before the re-plan changes
    assert after[40] == pytest.approx(1 - 30 / 90)
    assert after[70] == 0.0 and after[55] == pytest.approx(after[40] / 2)  # linear to the new end
    assert decay_progress(75, 10, 100, [(40, 70), (60, 90)]) == pytest.approx(
        decay_progress(60, 10, 100, [(40, 70)]) + (1 - decay_progress(60, 10, 100, [(40, 70)])) / 2
    )
    cos = [lr_factor(s, **{**kw, "schedule": "cosine"}, replans=[(40, 130)]) for s in range(131)]
    assert all(a >= b for a, b in itertools.pairwise(cos[10:])) and cos[130] == 0.0
    with pytest.raises(ValueError, match="outside the decay"):
        decay_progress(50, 10, 100, [(5, 70)])  # inside the warm-up


def test_config_rejects_replans_that_do_not_chain():
    good = {"epochs": 6, "budget_replans": [{"after_epoch": 3, "from_epochs": 8, "to_epochs": 6}]}
    assert load_config(good).planned_epochs == 8
    bad = [
        {"epochs": 7, "budget_replans": good["budget_replans"]},  # does not end at epochs
        {"epochs": 6, "budget_replans": [{"after_epoch": 6, "from_epochs": 8, "to_epochs": 6}]},
        {"epochs": 6, "budget_replans": [{"after_epoch": 3, "from_epochs": 8, "to_epochs": 9},
                                         {"after_epoch": 4, "from_epochs": 8, "to_epochs": 6}]},
        {"epochs": 6, "budget_replans": [{"after_epoch": 3, "from_epochs": 8, "to_epochs": 9},
                                         {"after_epoch": 3, "from_epochs": 9, "to_epochs": 6}]},
    ]  # fmt: skip
    for cfg in bad:
        with pytest.raises(ConfigError):
            load_config(cfg)
    cfg = load_config({**good, "schedule": "linear", "warmup_epochs": 4})  # re-planned in warm-up
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="outside the decay"):
        build_scheduler(opt, cfg, 5)


# --- a run that re-plans -----------------------------------------------------------------------


def _base(data_dir, name):
    return load_config({"model": "lenet5", "data_dir": str(data_dir), "budget_minutes": 5,
                        "train_subset": 200, "val_size": 100, "test_subset": 100,
                        "batch_size": 50, "threads": 1, "ema_decay": 0.9, "schedule": "linear",
                        "warmup_epochs": 1, "lr": 0.05, "name": name})  # fmt: skip


class _Stop(Exception):
    pass


def _rows(path):
    return [json.loads(s) for s in path.read_text().splitlines()]


def test_a_replanned_run_records_its_plan_and_resumes_exactly(data_dir, tmp_path, monkeypatch):
    # Whatever this machine times, the plan is 8 epochs, and the real epochs turn out to be
    # slower: after epoch 3 the run re-plans to 5 (the rule itself is tested above).
    monkeypatch.setattr(budget_mod, "plan_budget", lambda *a, **k: (8, None))
    asked = []

    def slower(budget_s, spent_s, epoch, epochs, epoch_s, **kw):
        asked.append(epoch)
        return 5 if epoch == 3 else None

    monkeypatch.setattr(budget_mod, "replan", lambda *a, **k: None)
    plain = train(_base(data_dir, "plain"), runs_dir=tmp_path, progress=False)
    assert plain["epochs"] == 8 and plain["budget_replans"] == []
    monkeypatch.setattr(budget_mod, "replan", slower)
    ref = train(_base(data_dir, "ref"), runs_dir=tmp_path, progress=False)

    written = yaml.safe_load((tmp_path / "ref" / "config.yaml").read_text())
    want = [{"after_epoch": 3, "from_epochs": 8, "to_epochs": 5}]
    assert written["epochs"] == ref["epochs"] == 5 and written["budget_replans"] == want
    assert ref["budget_replans"] == want and ref["budget"]["epochs"] == 8
    assert asked == [1, 2, 3, 4]  # after every epoch but the last; never again after a re-plan
    rows, plain_rows = (
        _rows(tmp_path / "ref" / "metrics.jsonl"),
        _rows(tmp_path / "plain" / "metrics.jsonl"),
    )
    assert len(rows) == 5
    # The same run as the 8-epoch plan up to the re-plan (the rate of epoch 4's first step is
    # the one the old plan had reached), then a faster decay to zero at the new end.
    assert [r["lr"] for r in rows[:4]] == [r["lr"] for r in plain_rows[:4]]
    assert [r["train_loss"] for r in rows[:3]] == [r["train_loss"] for r in plain_rows[:3]]
    assert rows[4]["lr"] < plain_rows[4]["lr"]
    last = load_checkpoint(tmp_path / "ref" / "last.pt")
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)

    # Cut after the re-plan: the resumed run keeps the plan and finishes as the uncut one.
    def stop_after_4(row):
        if row["epoch"] == 4:
            raise _Stop

    with pytest.raises(_Stop):
        train(_base(data_dir, "cut"), runs_dir=tmp_path, progress=False, on_epoch_end=stop_after_4)
    asked.clear()
    got = train(_base(data_dir, "cut"), runs_dir=tmp_path, resume=True, progress=False)
    assert asked == []  # epoch 5 is the last: nothing left to decide
    keys = ("train_loss", "val_loss", "val_acc", "lr")
    cut_rows = _rows(tmp_path / "cut" / "metrics.jsonl")
    assert [[r[k] for k in keys] for r in cut_rows] == [[r[k] for k in keys] for r in rows]
    for key in ("test_acc", "best_epoch", "best_val_acc", "epochs", "budget_replans"):
        assert got[key] == ref[key], key


def test_an_optimistic_timing_is_corrected_by_the_real_epochs(data_dir, tmp_path, monkeypatch):
    # Timed steps 1,000x faster than any real one: the plan is far too long, and the first
    # real epoch makes the run cut it to what the budget holds.
    steps, evals = budget_mod.time_steps, budget_mod.time_eval
    monkeypatch.setattr(budget_mod, "time_steps", lambda *a, **k: steps(*a, **k) / 1000)
    monkeypatch.setattr(budget_mod, "time_eval", lambda *a, **k: evals(*a, **k) / 1000)
    cfg = load_config({**_base(data_dir, "x").model_dump(), "budget_minutes": 0.05,
                       "warmup_epochs": 0, "model": "lenet5"})  # fmt: skip
    summary = train(cfg, runs_dir=tmp_path, progress=False)
    planned = summary["budget"]["epochs"]
    (first,) = summary["budget_replans"][:1]
    assert first == {"after_epoch": 1, "from_epochs": planned, "to_epochs": first["to_epochs"]}
    assert summary["epochs"] < planned / 10
    assert len(_rows(tmp_path / "x" / "metrics.jsonl")) == summary["epochs"]


def test_a_subset_run_whose_epochs_are_faster_than_timed_adds_epochs_on_its_subset(
    data_dir, tmp_path, monkeypatch
):
    # The plan: 2 epochs of a 120-image subset (fewer than FILL_BELOW fit); the real epochs
    # are faster, and after the first the run adds epochs instead of leaving the budget unused.
    monkeypatch.setattr(budget_mod, "plan_budget", lambda *a, **k: (2, 120))
    asked = []

    def faster(budget_s, spent_s, epoch, epochs, epoch_s, **kw):
        asked.append(epoch)
        return 4 if epoch == 1 else None

    monkeypatch.setattr(budget_mod, "replan", faster)
    cfg = load_config({**_base(data_dir, "sub").model_dump(), "warmup_epochs": 0})
    summary = train(cfg, runs_dir=tmp_path, progress=False)
    written = yaml.safe_load((tmp_path / "sub" / "config.yaml").read_text())
    assert written["train_subset"] == summary["train_images"] == 120  # the subset is kept
    assert written["epochs"] == summary["epochs"] == 4
    assert written["budget_replans"] == [{"after_epoch": 1, "from_epochs": 2, "to_epochs": 4}]
    assert asked == [1, 2, 3] and len(_rows(tmp_path / "sub" / "metrics.jsonl")) == 4
