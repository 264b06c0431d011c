"""Training to a time budget: time a few real optimizer steps, then resolve the epochs.

``--budget-minutes M`` asks for "as much training as M minutes of this machine allow". The
trainer times ``warmup + timed`` steps on a throw-away copy of the model and optimizer (real
batches, real augmentation, the EMA update included), adds the validation pass, and picks the
largest whole number of epochs that fits; the schedule is then built for that many epochs
and the number is written to ``config.yaml``, so the run is reproducible on any machine with
``--epochs``. When not even one epoch fits, the run trains one epoch on the seeded subset of
training images that fits (``train_subset``, also written to ``config.yaml``). The real time is recorded beside the budget in ``summary.json``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from cnnbench.train.config import ConfigError


def epochs_for_budget(budget_s: float, epoch_s: float, min_epochs: int = 1) -> int:
    """The whole epochs of ``epoch_s`` seconds that fit in ``budget_s`` (at least ``min_epochs``)."""
    if budget_s <= 0 or epoch_s <= 0:
        raise ValueError(f"budget and epoch time must be > 0, got {budget_s}, {epoch_s}")
    return max(min_epochs, math.floor(budget_s / epoch_s + 1e-9))


def time_steps(
    model: nn.Module,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    warmup: int = 2,
    timed: int = 5,
    ema_decay: float | None = None,
    sync: Callable[[], None] = lambda: None,
) -> float:
    """Median seconds of one optimizer step on a deep copy of ``model`` (left untouched)."""
    from cnnbench.train.ema import ModelEMA

    trial = copy.deepcopy(model).train()
    optimizer = make_optimizer(trial)
    ema = ModelEMA(trial, ema_decay) if ema_decay else None
    times = []
    for i in range(warmup + timed):
        try:
            x, y = next(batches)
        except StopIteration:
            raise ConfigError("the training split has too few batches to time a budget") from None
        t0 = time.perf_counter()
        loss = loss_fn(trial(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def time_eval(
    model: nn.Module, batch: torch.Tensor, repeats: int = 2, sync: Callable[[], None] = lambda: None
) -> float:
    """Seconds of one evaluation forward pass of ``batch`` (best of ``repeats``)."""
    model.eval()
    best = math.inf
    with torch.inference_mode():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            model(batch)
            sync()
            best = min(best, time.perf_counter() - t0)
    model.train()
    return best
