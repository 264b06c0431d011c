"""Optimizers and learning-rate schedules, built from a RunConfig by table, not if/elif."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import torch
from torch import nn

from cnnbench.train.config import RunConfig


def split_decay(params: Iterable[nn.Parameter]) -> tuple[list, list]:
    """(conv / linear weights, 1-D parameters: BN scales and shifts, biases) of ``params``."""
    decay, no_decay = [], []
    for p in params:
        (decay if p.ndim > 1 else no_decay).append(p)
    return decay, no_decay


def param_groups(
    model: nn.Module, weight_decay: float, lr: float | None = None, bias_lr_mult: float = 1.0
) -> list[dict]:
    """Decay conv/linear weights only: decaying BN scales and biases hurts small CNNs.

    With ``lr`` and ``bias_lr_mult != 1``, BatchNorm parameters get their own group at
    ``lr * bias_lr_mult`` (the fast trainers' BN-bias scaler); other 1-D parameters (the
    head's bias, conv biases) keep ``lr``: a 64x rate on the head's bias diverges.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay, no_decay = split_decay(trainable)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    norm: list[nn.Parameter] = []
    if lr is not None and bias_lr_mult != 1.0:
        norm_ids = {
            id(p)
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
            for p in m.parameters(recurse=False)
        }
        norm = [p for p in no_decay if id(p) in norm_ids]
        no_decay = [p for p in no_decay if id(p) not in norm_ids]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if norm:
        groups.append({"params": norm, "weight_decay": 0.0, "lr": lr * bias_lr_mult})
    return groups


_OPTIMIZERS: dict[str, Callable[[Iterable, RunConfig], torch.optim.Optimizer]] = {
    "sgd": lambda g, c: torch.optim.SGD(
        g, lr=c.effective_lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0
    ),
    "adam": lambda g, c: torch.optim.Adam(g, lr=c.effective_lr),
    "adamw": lambda g, c: torch.optim.AdamW(g, lr=c.effective_lr),
    "adadelta": lambda g, c: torch.optim.Adadelta(g, lr=c.effective_lr),
}


def build_optimizer(params: nn.Module | list[dict], config: RunConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer``; ``params`` is a model or param groups."""
    if isinstance(params, nn.Module):
        groups = param_groups(params, config.weight_decay, config.effective_lr, config.bias_lr_mult)
    else:
        groups = params
    return _OPTIMIZERS[config.optimizer](groups, config)


def lr_factor(
    step: int,
    *,
    total: int,
    warmup: int,
    schedule: str,
    steps_per_epoch: int,
    step_every: int,
    step_gamma: float,
    replans: Sequence[tuple[int, int]] = (),
) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    ``total`` is the run's first plan in steps; ``replans`` are ``(at_step, new_total)`` pairs,
    in order, where a budget run changed its plan (never inside the warm-up). From a re-plan on,
    the decay goes on from the progress it had reached to zero at the new end, so the rate
    never jumps and the schedule keeps its shape over the rest of the run.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return step_gamma ** (step // (step_every * steps_per_epoch))
    progress = decay_progress(step, warmup, total, replans)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule in ("onecycle", "linear"):  # (warm-up above), then linear decay to zero
        return 1.0 - progress
    raise ValueError(f"unknown schedule {schedule!r}")


def decay_progress(
    step: int, warmup: int, total: int, replans: Sequence[tuple[int, int]] = ()
) -> float:
    """How far (0 to 1) the decay after the warm-up has gone at ``step``, re-plans included."""
    start, done, end = warmup, 0.0, total
    for at, new_end in replans:
        if not start <= at < min(end, new_end):  # start is the warm-up end, then each re-plan
            raise ValueError(f"a re-plan at step {at} (to {new_end}) is outside the decay")
        if step < at:
            break
        done += (1.0 - done) * (at - start) / max(1, end - start)
        start, end = at, new_end
    return min(1.0, done + (1.0 - done) * max(0, step - start) / max(1, end - start))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: RunConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR; ``onecycle`` without warmup_epochs gets 30 % of the run (as torch)."""
    fn = partial(
        lr_factor,
        total=config.planned_epochs * steps_per_epoch,
        warmup=warmup_steps(config, steps_per_epoch),
        schedule=config.schedule,
        steps_per_epoch=steps_per_epoch,
        step_every=config.step_every,
        step_gamma=config.step_gamma,
        replans=[
            (r.after_epoch * steps_per_epoch, r.to_epochs * steps_per_epoch)
            for r in config.budget_replans
        ],
    )
    fn(config.epochs * steps_per_epoch)  # a re-plan inside the warm-up fails here, not later
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def warmup_steps(config: RunConfig, steps_per_epoch: int) -> int:
    """Warm-up steps, laid out on the first plan: ``onecycle`` without warmup_epochs warms up
    over 30 % of it (as torch's OneCycleLR)."""
    warmup_epochs = config.warmup_epochs
    if config.schedule == "onecycle" and warmup_epochs == 0:
        warmup_epochs = 0.3 * config.planned_epochs
    return round(warmup_epochs * steps_per_epoch)
