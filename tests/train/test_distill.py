"""Knowledge distillation (--teacher): the loss, the cached targets, and the run around them."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from cnnbench.data import BatchIterator
from cnnbench.data.sources import sha256_file
from cnnbench.train import ConfigError, load_config, train
from cnnbench.train import distill as distill_mod
from cnnbench.train.distill import DistillLoss, check_teacher, tempered_log_probs

# --- the loss ----------------------------------------------------------------------------------


def test_without_teacher_weight_the_loss_is_the_smoothed_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    teacher = tempered_log_probs(torch.randn(16, 10), 4.0)
    ce = nn.functional.cross_entropy(logits, y, label_smoothing=0.2)
    assert torch.allclose(DistillLoss(0.0, 4.0, 0.2)(logits, y, teacher), ce)
    assert torch.allclose(DistillLoss(0.9, 4.0, 0.2)(logits, y), ce)  # no targets: plain CE


def test_the_soft_term_is_t_squared_kl_and_vanishes_when_the_student_agrees():
    torch.manual_seed(1)
    logits, y = torch.randn(8, 5, requires_grad=True), torch.randint(0, 5, (8,))
    t_logits = torch.randn(8, 5)
    p = torch.softmax(t_logits / 3.0, 1)
    kl = (p * (p.log() - torch.log_softmax(logits / 3.0, 1))).sum(1).mean()
    got = DistillLoss(1.0, 3.0)(logits, y, tempered_log_probs(t_logits, 3.0))
    assert math.isclose(got.item(), 9.0 * kl.item(), rel_tol=1e-5)
    same = DistillLoss(1.0, 3.0)(logits, y, tempered_log_probs(logits.detach(), 3.0))
    same.backward()
    assert abs(same.item()) < 1e-6 and logits.grad.abs().max() < 1e-6


@pytest.mark.parametrize("alpha, temperature", [(-0.1, 4.0), (1.5, 4.0), (0.5, 0.0)])
def test_bad_distillation_settings_are_refused(alpha, temperature):
    with pytest.raises(ValueError):
        DistillLoss(alpha, temperature)


# --- the targets travel with their images ------------------------------------------------------


@pytest.mark.parametrize("shard", [None, (1, 2)])
def test_soft_targets_are_gathered_in_the_order_of_their_images(shard):
    n = 37
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    y = torch.arange(n)
    soft = torch.arange(n, dtype=torch.float32).view(n, 1).repeat(1, 3)
    it = BatchIterator(x, y, 8, shuffle=True, mean=[0, 0, 0], std=[1, 1, 1],
                       generator=torch.Generator().manual_seed(3), shard=shard, soft=soft)  # fmt: skip
    seen = []
    for xb, yb, sb in it:
        assert torch.equal(sb[:, 0].long(), yb) and torch.equal(
            (xb[:, 0, 0, 0] * 255).round().long(), yb
        )
        seen += yb.tolist()
    rank, world = shard or (0, 1)
    want = [i for b in range(0, n, 8) for i in range(b + rank, min(b + 8, n), world)]
    assert len(seen) == len(set(seen)) == len(want)  # each image once, the shard's share
    with pytest.raises(ValueError, match="soft has"):
        BatchIterator(x, y, 8, shuffle=False, mean=[0] * 3, std=[1] * 3, soft=soft[:-1])


# --- the teacher must have seen this data ------------------------------------------------------


def _ckpt(**kw):
    base = {"model_spec": {"name": "lenet5"}, "dataset": "cifar10", "classes": ["a", "b"],
            "input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}  # fmt: skip
    return {**base, **kw}


def _check(ckpt):
    check_teacher(ckpt, dataset="cifar10", classes=["a", "b"], input_size=(3, 32, 32),
                  mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # fmt: skip


def test_a_teacher_of_the_same_data_passes():
    _check(_ckpt())


@pytest.mark.parametrize(
    "bad, message",
    [({"dataset": "cifar100"}, "trained on 'cifar100'"), ({"classes": ["b", "a"]}, "classes"),
     ({"input_size": [3, 64, 64]}, "input size"), ({"mean": [0.4, 0.5, 0.5]}, "normalisation")],
)  # fmt: skip
def test_a_teacher_of_other_data_is_refused(bad, message):
    with pytest.raises(ConfigError, match=message):
        _check(_ckpt(**bad))


# --- in a run ----------------------------------------------------------------------------------


def _cfg(data_dir, name, teacher=None, **kw):
    return load_config({"model": "lenet5", "data_dir": str(data_dir), "epochs": 3,
                        "train_subset": 200, "val_size": 100, "test_subset": 100,
                        "batch_size": 50, "threads": 1, "lr": 0.05, "label_smoothing": 0.1,
                        "name": name, "teacher": teacher, **kw})  # fmt: skip


def _train_data(data_dir, cfg):
    """The run's splits as the trainer builds them from ``cfg``."""
    from cnnbench.data import load_dataset
    from cnnbench.train.distributed import DistInfo
    from cnnbench.train.trainer import _Data

    ds = load_dataset("cifar10", data_dir=data_dir, show_progress=False)
    return _Data(ds, cfg, torch.device("cpu"), DistInfo())


def _rows(run):
    keys = ("train_loss", "val_loss", "val_acc", "lr")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [[json.loads(line)[k] for k in keys] for line in lines]


class _Stop(Exception):
    pass


def test_a_distilled_run_learns_from_the_teachers_train_split_predictions(
    data_dir, tmp_path, trained_run
):
    got = train(_cfg(data_dir, "student", str(trained_run)), runs_dir=tmp_path, progress=False)
    facts = got["distill"]
    assert facts["teacher_sha256"] == sha256_file(trained_run / "best.pt")
    assert facts["images"] == got["train_images"] == 200 and not facts["cached"]
    assert (
        facts["alpha"] == 0.9
        and facts["temperature"] == 4.0
        and 0 <= facts["teacher_train_acc"] <= 1
    )
    cache = torch.load(tmp_path / "student" / "teacher.pt", weights_only=True)
    assert cache["logits"].shape == (200, 10)

    # The cached logits are the teacher's flip-averaged predictions on the training split:
    # recomputed here from the teacher and the split's images.
    from cnnbench.data.augment import normalize
    from cnnbench.rundir import load_model_from

    data = _train_data(data_dir, _cfg(data_dir, "student", str(trained_run)))
    teacher, _ = load_model_from(trained_run)
    x = normalize(data.x_train, data.mean, data.std)
    with torch.inference_mode():
        want = 0.5 * teacher(x) + 0.5 * teacher(x.flip(-1))
    assert torch.allclose(cache["logits"], want, atol=1e-4)

    # With no weight on the teacher, the run is the plain run, step for step.
    zero = train(_cfg(data_dir, "zero", str(trained_run), distill_alpha=0.0), runs_dir=tmp_path,
                 progress=False)  # fmt: skip
    plain = train(_cfg(data_dir, "plain"), runs_dir=tmp_path, progress=False)
    assert _rows(tmp_path / "zero") == _rows(tmp_path / "plain")
    assert zero["test_acc"] == plain["test_acc"] and plain["distill"] is None
    assert _rows(tmp_path / "student") != _rows(tmp_path / "plain")  # the teacher taught


def test_a_distilled_run_resumes_exactly_from_its_cached_targets(
    data_dir, tmp_path, trained_run, monkeypatch
):
    def stop_after_1(row):
        if row["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train(_cfg(data_dir, "cut", str(trained_run)), runs_dir=tmp_path, progress=False,
              on_epoch_end=stop_after_1)  # fmt: skip

    def no_teacher(source):
        raise AssertionError("a resumed run loaded its teacher again")

    monkeypatch.setattr(distill_mod, "load_teacher", no_teacher)
    got = train(_cfg(data_dir, "cut", str(trained_run)), runs_dir=tmp_path, resume=True,
                progress=False)  # fmt: skip
    assert got["distill"]["cached"]
    monkeypatch.undo()
    whole = train(_cfg(data_dir, "whole", str(trained_run)), runs_dir=tmp_path, progress=False)
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "whole")
    assert got["test_acc"] == whole["test_acc"]


def test_the_teachers_seconds_come_out_of_the_budget(data_dir, tmp_path, trained_run):
    got = train(_cfg(data_dir, "budget", str(trained_run), budget_minutes=0.1),
                runs_dir=tmp_path, progress=False)  # fmt: skip
    spent = got["distill"]["seconds"]
    assert spent > 0 and got["budget"]["spent_before_s"] == round(spent, 2)
    assert math.isclose(got["budget"]["budget_s"], 6.0 - spent, rel_tol=1e-9)


def test_a_budget_that_cuts_the_split_takes_the_subsets_rows_without_a_second_teacher_pass(
    data_dir, tmp_path, trained_run, monkeypatch
):
    from cnnbench.train import budget as budget_mod

    calls = []
    real = distill_mod.teacher_logits

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_mod, "teacher_logits", counted)
    monkeypatch.setattr(budget_mod, "plan_budget", lambda *a, **k: (1, 120))  # the cut, fixed
    got = train(_cfg(data_dir, "cut", str(trained_run), budget_minutes=5), runs_dir=tmp_path,
                progress=False)  # fmt: skip
    assert len(calls) == 1 and got["train_images"] == 120
    facts = got["distill"]
    cache = torch.load(tmp_path / "cut" / "teacher.pt", weights_only=True)
    assert facts["images"] == cache["facts"]["images"] == 120
    assert cache["logits"].shape == (120, 10)
    # The rows are the teacher's predictions on the subset's own images, and the fingerprint
    # is the subset's: computed afresh on the subset here, they agree.
    subset = _train_data(data_dir, _cfg(data_dir, "x", str(trained_run), train_subset=120))
    fresh = distill_mod.teacher_logits(str(trained_run), subset, tmp_path / "none.pt",
                                       torch.device("cpu"))  # fmt: skip
    assert torch.allclose(cache["logits"], fresh[0], atol=1e-5)
    for key in ("train_images_sha256", "teacher_train_acc", "images"):
        assert facts[key] == fresh[1][key]


def test_a_missing_or_foreign_teacher_fails_before_the_run_folder_exists(
    data_dir, tmp_path, trained_run
):
    with pytest.raises(ConfigError, match=r"teacher: .*no such run"):
        train(_cfg(data_dir, "orphan", str(tmp_path / "nope")), runs_dir=tmp_path, progress=False)
    assert not (tmp_path / "orphan").exists()
    foreign = torch.load(trained_run / "best.pt", weights_only=False)
    foreign["dataset"] = "cifar100"
    torch.save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError, match="trained on 'cifar100', this run on 'cifar10'"):
        train(_cfg(data_dir, "foreign", str(tmp_path / "foreign.pt")), runs_dir=tmp_path,
              progress=False)  # fmt: skip
    assert not (tmp_path / "foreign").exists()
