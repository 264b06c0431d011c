"""Transfer learning: loading a parent, freeze policies, BatchNorm, errors, a real transfer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnbench.cli import main as cli_main
from cnnbench.models import create_model
from cnnbench.train import (
    CheckpointError,
    ConfigError,
    load_checkpoint,
    load_config,
    save_checkpoint,
    train,
)
from cnnbench.train.optim import build_optimizer
from cnnbench.train.transfer import build_child, on_epoch_start, optimizer_groups

# A small MobileNetV2 (12 freeze groups, BatchNorm everywhere) keeps the steps fast.
PARENT_ARGS = {"width_mult": 0.25, "dropout": 0.0}
GROUPS = 12


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: on a shared 2-core machine a second one makes small steps 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def parent_pt(tmp_path: Path) -> Path:
    """A 100-class parent checkpoint with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = create_model("mobilenetv2_reduced", num_classes=100, **PARENT_ARGS)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "parent.pt"
    save_checkpoint(
        {"model": model.state_dict(), "model_spec": model.cnnbench_spec, "input_size": [3, 32, 32]},
        path,
    )
    return path


def _config(parent: Path, **transfer):
    return load_config(
        {
            "model": "mobilenetv2_reduced",
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "transfer": {"parent": str(parent), **transfer},
        }
    )


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, n: int = 3) -> None:
    """What train_one_epoch does: model.train(), then real optimizer steps."""
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(n):
        x, y = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _group_keys(model: nn.Module, i: int) -> set[str]:
    """State-dict keys (parameters and buffers) of backbone group ``i``."""
    names = {id(m): n for n, m in model.named_modules()}
    prefix = names[id(model.freeze_groups()[i])] + "."
    return {k for k in model.state_dict() if k.startswith(prefix)}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], keys) -> set[str]:
    return {k for k in keys if not torch.equal(before[k], after[k])}


def test_child_keeps_every_backbone_weight(parent_pt):
    child = build_child(_config(parent_pt, policy="full"), num_classes=10)
    parent = load_checkpoint(parent_pt)["model"]
    got = child.state_dict()
    backbone = [k for k in parent if not k.startswith("head.")]
    assert backbone and set(got) - {"head.weight", "head.bias"} == set(backbone)
    for k in backbone:
        assert torch.equal(got[k], parent[k]), k
    assert child.head.weight.shape == (10, child.num_features)
    assert child.cnnbench_spec == {"name": "mobilenetv2_reduced", "num_classes": 10, **PARENT_ARGS}
    rebuilt = create_model(**child.cnnbench_spec)
    rebuilt.load_state_dict(child.state_dict())  # the child's spec rebuilds the child


@pytest.mark.parametrize(("policy", "k", "n_train"), [("head", 2, 0), ("last-k", 3, 3)])
def test_freezing_really_freezes(parent_pt, policy, k, n_train):
    config = _config(parent_pt, policy=policy, k=k)
    model = build_child(config, num_classes=10)
    optimizer = build_optimizer(optimizer_groups(model, config), config)
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert held == trainable, "the optimizer must hold exactly the trainable parameters"
    assert all(p.requires_grad for g in optimizer.param_groups for p in g["params"])
    # head first at lr, backbone at lr * mult, no decay on 1-d parameters
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    for g in optimizer.param_groups:
        is_head = any(p is model.head.weight or p is model.head.bias for p in g["params"])
        assert g["lr"] == pytest.approx(0.1 if is_head else 0.01)
        assert all(p.ndim > 1 for p in g["params"]) or g["weight_decay"] == 0.0

    before = _snapshot(model)
    on_epoch_start(model, config, 1)
    _steps(model, optimizer)
    after = _snapshot(model)
    first_trainable = GROUPS - n_train
    for i in range(GROUPS):
        changed = _changed(before, after, _group_keys(model, i))
        if i < first_trainable:
            # weights, BN affine parameters, BN running stats and num_batches_tracked
            assert not changed, f"frozen group {i} changed: {sorted(changed)[:4]}"
        else:
            assert any(k.endswith("running_mean") for k in changed), f"group {i} BN not training"
            assert any(k.endswith("weight") for k in changed), f"group {i} did not train"
    assert _changed(before, after, ["head.weight", "head.bias"]) == {"head.weight", "head.bias"}


def test_gradual_unfreezes_one_group_every_n_epochs(parent_pt):
    config = _config(parent_pt, policy="gradual", gradual_every=2)
    model = build_child(config, num_classes=10)
    optimizer = build_optimizer(optimizer_groups(model, config), config)
    # every parameter is in the optimizer from epoch 1: its state dict layout never changes
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    groups = model.freeze_groups()

    def trainable() -> list[bool]:
        return [all(p.requires_grad for p in g.parameters()) for g in groups]

    for epoch in range(1, 30):
        on_epoch_start(model, config, epoch)
        n = min(GROUPS, (epoch - 1) // 2)  # epochs 1-2: head only, 3-4: last group, ...
        assert trainable() == [False] * (GROUPS - n) + [True] * n, f"epoch {epoch}"
        assert not any(p.requires_grad for g in groups[: GROUPS - n] for p in g.parameters())
        assert model.head.weight.requires_grad
    # a pure function of the epoch: going back (a resume) gives that epoch's state again
    on_epoch_start(model, config, 5)
    assert trainable() == [False] * 10 + [True] * 2

    # frozen parameters in the optimizer (momentum, weight decay) still do not move
    for epoch in (1, 3, 5):
        on_epoch_start(model, config, epoch)
        before = _snapshot(model)
        _steps(model, optimizer, n=2)
        after = _snapshot(model)
        n = (epoch - 1) // 2
        for i in range(GROUPS):
            changed = _changed(before, after, _group_keys(model, i))
            assert bool(changed) == (i >= GROUPS - n), f"epoch {epoch}, group {i}"


def test_frozen_batchnorm_survives_model_train(parent_pt):
    model = build_child(_config(parent_pt, policy="head"), num_classes=10)
    bn = model.freeze_groups()[0][1]
    assert isinstance(bn, nn.BatchNorm2d)
    model.train()  # what the trainer does at the start of every epoch
    mean = bn.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert not bn.training and torch.equal(bn.running_mean, mean)
    model.eval()
    assert not bn.training


def test_errors_are_clear(parent_pt, tmp_path):
    with pytest.raises(ConfigError, match="'mobilenetv2_reduced' but this run's model is 'lenet5'"):
        build_child(load_config({"model": "lenet5", "transfer": {"parent": str(parent_pt)}}), 10)
    with pytest.raises(CheckpointError, match="not found"):
        build_child(_config(tmp_path / "nope"), 10)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a cnnbench checkpoint"):
        build_child(_config(foreign), 10)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        build_child(_config(garbage), 10)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "best.pt").write_bytes(parent_pt.read_bytes())
    with pytest.raises(CheckpointError, match="not complete"):
        build_child(_config(unfinished), 10)
    with pytest.raises(ConfigError, match="only 12 backbone groups"):
        build_child(_config(parent_pt, policy="last-k", k=13), 10)
    wider = {
        "model": "mobilenetv2_reduced",
        "model_args": {"width_mult": 1.0},
        "transfer": {"parent": str(parent_pt)},
    }
    with pytest.raises(ConfigError, match="differ from the parent"):
        build_child(load_config(wider), 10)
    ckpt = load_checkpoint(parent_pt)
    big = tmp_path / "big.pt"
    save_checkpoint({**ckpt, "input_size": [3, 64, 64]}, big)
    with pytest.raises(ConfigError, match="64x64"):
        build_child(_config(big), 10)


# --- a real transfer on CIFAR-10 ------------------------------------------------------------

REAL = {
    "model": "lenet5",
    "model_args": {"activation": "relu", "pool": "max"},
    "dataset": "cifar10",
    "optimizer": "adam",
    "lr": 0.002,
    "batch_size": 64,
    "val_size": 500,
    "test_subset": 1000,
    "threads": 1,
}


@pytest.fixture(scope="module")
def trained_parent(data_dir, tmp_path_factory):
    """LeNet-5 on 6,000 CIFAR-10 images; seed 1 draws another split and subset than the
    children's seed 0 (about 1 in 8 of a child's 500 images is also among the parent's)."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config(
        {
            **REAL,
            "data_dir": str(data_dir),
            "epochs": 3,
            "train_subset": 6000,
            "seed": 1,
            "name": "parent",
        }
    )
    summary = train(cfg, runs_dir=runs, progress=False)
    return runs, summary


def test_child_beats_scratch_at_the_same_budget(trained_parent, data_dir):
    runs, parent = trained_parent
    # 32 steps of 16 images; measured margins (3 seeds): 17-19 accuracy points.
    budget = ["--epochs", "1", "--train-subset", "500", "--batch-size", "16", "--lr", "0.005"]
    common = ["--runs-dir", str(runs), "--quiet", "--data-dir", str(data_dir), "--optimizer",
              "adam", "--val-size", "500", "--test-subset", "1000", "--threads", "1",
              "--seed", "0", *budget]  # fmt: skip
    # model and model_args default to the parent's, the name to <parent>-to-<dataset>-<policy>
    rc = cli_main(["transfer", "--from", str(runs / "parent"), "--dataset", "cifar10",
                   "--policy", "last-k", "--k", "1", *common])  # fmt: skip
    assert rc == 0
    child = json.loads((runs / "parent-to-cifar10-last-k" / "summary.json").read_text())
    assert child["model"] == "lenet5" and child["model_args"] == REAL["model_args"]
    assert child["transfer"]["policy"] == "last-k" and child["transfer"]["k"] == 1
    rc = cli_main(["train", "--model", "lenet5", "--model-arg", "activation=relu",
                   "--model-arg", "pool=max", "--name", "scratch", *common])  # fmt: skip
    assert rc == 0
    scratch = json.loads((runs / "scratch" / "summary.json").read_text())
    assert child["test_images"] == scratch["test_images"] == 1000
    # 500 images for one epoch barely move a fresh LeNet; the parent's features carry over.
    assert child["test_acc"] > scratch["test_acc"] + 0.08, (parent, child, scratch)


def test_cli_refuses_a_mismatched_model_before_making_a_run(trained_parent, data_dir, capsys):
    runs, _ = trained_parent
    rc = cli_main(["transfer", "--from", str(runs / "parent"), "--model", "resnet34",
                   "--runs-dir", str(runs), "--name", "bad", "--quiet"])  # fmt: skip
    assert rc == 2
    assert "'lenet5' but this run's model is 'resnet34'" in capsys.readouterr().err
    assert not (runs / "bad").exists()
    assert cli_main(["transfer", "--runs-dir", str(runs), "--quiet"]) == 2
    assert "--from is required" in capsys.readouterr().err


def test_gradual_child_resumes_exactly(trained_parent, data_dir, monkeypatch):
    """Interrupt a gradual child after epoch 2 of 3 (each epoch unfreezes a group), resume it,
    and compare every metric with the uninterrupted run."""
    import cnnbench.train.trainer as trainer

    runs, _ = trained_parent
    cfg = {
        **REAL,
        "data_dir": str(data_dir),
        "epochs": 3,
        "train_subset": 300,
        "test_subset": 200,
        "val_size": 200,
        "transfer": {"parent": str(runs / "parent"), "policy": "gradual"},
    }
    ref = train(load_config({**cfg, "name": "gradual-ref"}), runs_dir=runs, progress=False)

    real_epoch, calls = trainer.train_one_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted)
    config = load_config({**cfg, "name": "gradual-cut"})
    with pytest.raises(KeyboardInterrupt):
        train(config, runs_dir=runs, progress=False)
    monkeypatch.setattr(trainer, "train_one_epoch", real_epoch)
    assert load_checkpoint(runs / "gradual-cut" / "last.pt")["epoch"] == 2
    resumed = train(config, runs_dir=runs, resume=True, progress=False)

    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
    rows = {
        name: [
            {k: json.loads(line)[k] for k in keys}
            for line in (runs / name / "metrics.jsonl").read_text().splitlines()
        ]
        for name in ("gradual-ref", "gradual-cut")
    }
    assert rows["gradual-cut"] == rows["gradual-ref"]
    assert resumed["test_acc"] == ref["test_acc"]


def test_a_gradual_childs_budget_times_each_freeze_state(trained_parent, data_dir, monkeypatch):
    """Timed frozen only, the cheap first epoch set the budget and the later epochs overran it
    (4.6 min on 2); timed fully unfrozen only, the child used 86 s of a 120-s budget."""
    from cnnbench.models import create_model
    from cnnbench.train import budget
    from cnnbench.train.transfer import trainable_groups

    runs, _ = trained_parent
    seen = []
    real = budget.time_steps

    def spy(model, *args, **kwargs):
        seen.append(sum(p.requires_grad for p in model.parameters()))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(budget, "time_steps", spy)
    cfg = load_config({**REAL, "data_dir": str(data_dir), "train_subset": 500, "val_size": 500,
                       "test_subset": 500, "budget_minutes": 0.1, "name": "gradual-child",
                       "transfer": {"parent": str(runs / "parent"), "policy": "gradual"}})  # fmt: skip
    summary = train(cfg, runs_dir=runs, progress=False)
    groups = len(create_model(REAL["model"], **REAL["model_args"]).freeze_groups())
    info = summary["budget"]
    # 6 s of LeNet-5 steps on 500 images reach every state: one timing each, the head-only
    # state first, every parameter training last
    assert list(info["step_s_by_state"]) == [str(k) for k in range(groups + 1)]
    assert seen == sorted(set(seen)) and len(seen) == groups + 1
    assert seen[-1] == sum(1 for _ in create_model(REAL["model"]).parameters())

    def step_s(epoch):
        return info["step_s_by_state"][str(trainable_groups(cfg, groups, epoch))]

    plan = budget.plan_budget(info["budget_s"], step_s, info["eval_s"], 500, REAL["batch_size"],
                              steady_from=groups + 1)  # fmt: skip
    assert info["epochs"] == plan[0]
    # The real epochs may re-plan it, but not before every state has been reached.
    replans = summary["budget_replans"]
    assert summary["epochs"] == (replans[-1]["to_epochs"] if replans else plan[0])
    assert all(r["after_epoch"] >= groups + 1 for r in replans)
