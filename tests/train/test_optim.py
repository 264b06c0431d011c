from __future__ import annotations

import itertools

import pytest
import torch

from cnnbench.train.config import load_config
from cnnbench.train.optim import build_optimizer, build_scheduler, param_groups


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adadelta"])
def test_every_optimizer_builds_and_steps(name):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    cfg = load_config({"optimizer": name, "lr": 0.1, "weight_decay": 5e-4})
    opt = build_optimizer(model, cfg)
    before = model[0].weight.detach().clone()
    model(torch.randn(8, 4)).sum().backward()
    opt.step()
    assert not torch.equal(before, model[0].weight)


def test_weight_decay_spares_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    groups = param_groups(model, 5e-4)
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    assert sum(p.numel() for p in groups[0]["params"]) == model[0].weight.numel()


def _lrs(schedule: str, epochs: int = 10, steps: int = 5, **kw) -> list[float]:
    cfg = load_config({"schedule": schedule, "epochs": epochs, "lr": 1.0, **kw})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, steps)
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules():
    assert set(_lrs("constant")) == {1.0}
    step = _lrs("step", step_every=4, step_gamma=0.5)
    assert step[0] == 1.0 and step[4 * 5] == 0.5 and step[8 * 5] == 0.25
    cos = _lrs("cosine")
    assert cos[0] == 1.0 and cos[-1] < 0.01 and all(a >= b for a, b in itertools.pairwise(cos))
    warm = _lrs("cosine", warmup_epochs=2)
    assert warm[0] == pytest.approx(0.1) and max(warm) == pytest.approx(1.0)
    assert warm.index(max(warm)) == 9
    one = _lrs("onecycle")
    peak = one.index(max(one))
    assert peak == 14 and one[-1] < 0.05 and one[0] < 0.1
