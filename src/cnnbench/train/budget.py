"""Training to a time budget: time a few real optimizer steps, then resolve the epochs.

``--budget-minutes M`` asks for "as much training as M minutes of this machine allow". The
trainer times ``warmup + timed`` steps on a throw-away copy of the model and optimizer (real
batches, real augmentation, the EMA update included), adds the validation pass, and picks the
largest whole number of epochs that fits; the schedule is then built for that many epochs
and the number is written to ``config.yaml``, so the run is reproducible on any machine with
``--epochs``. When not even one epoch fits, the run trains one epoch on the seeded subset of
training images that fits (``train_subset``, also written to ``config.yaml``). Between one and
``FILL_BELOW`` epochs, rounding down would waste up to half the budget, so the run trains the
next whole number of epochs on the seeded subset that fills it (:func:`plan_budget`). The real
time is recorded beside the budget in ``summary.json``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from cnnbench.train.config import ConfigError

FILL_BELOW = 4  # below this many epochs, fill the budget with a subset instead of rounding down


def plan_budget(
    budget_s: float, step_s: float, eval_s: float, n_train: int, batch_size: int
) -> tuple[int, int | None]:
    """(epochs, train_subset or None) that fill ``budget_s`` as closely as whole epochs allow.

    One epoch costs ``ceil(n / batch) * step_s + eval_s``. At least ``FILL_BELOW`` full epochs:
    the whole ones that fit, on every image (at most a fifth of the budget unused). Fewer: the
    next whole number of epochs, each on the subset of images that fits (never fewer than one
    batch), which uses the budget instead of rounding a 1.9-epoch budget down to one epoch.
    """
    if min(budget_s, step_s, n_train, batch_size) <= 0 or eval_s < 0:
        raise ValueError(
            f"budget, step time, images and batch size must be > 0, got "
            f"{budget_s}, {step_s}, {n_train}, {batch_size}"
        )
    epoch_s = math.ceil(n_train / batch_size) * step_s + eval_s
    fits = budget_s / epoch_s
    if fits >= FILL_BELOW:
        return math.floor(fits + 1e-9), None
    epochs = max(1, math.ceil(fits - 1e-9))
    per_epoch = budget_s / epochs - eval_s
    subset = int(max(0.0, per_epoch) / (step_s / batch_size))
    subset = max(min(batch_size, n_train), min(n_train, subset))
    return epochs, (subset if subset < n_train else None)


def time_steps(
    model: nn.Module,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    warmup: int = 2,
    timed: int = 5,
    min_seconds: float = 1.0,
    max_seconds: float = 8.0,
    ema_decay: float | None = None,
    sync: Callable[[], None] = lambda: None,
    amp_dtype: torch.dtype | None = None,
    device_type: str = "cpu",
) -> float:
    """Mean seconds of one optimizer step on a deep copy of ``model`` (left untouched).

    A step is timed from fetching its batch (the augmentation is part of what an epoch costs:
    for a LeNet-5 it is a third of the step) to the end of the EMA update. ``warmup`` untimed
    steps, then at least ``timed`` timed ones and at least ``min_seconds`` of them (a 30 ms
    step timed five times is a noisy estimate: a 1.5-minute LeNet-5 budget ran 2.2 minutes).
    Slow steps stop it early: once the timed steps have taken ``max_seconds`` (with at least
    two of them), and after one warm-up step when that step alone took ``max_seconds / 4`` (a
    MobileNet step at batch 512 takes ~5 s on two cores: seven of them would be a minute the
    budget never sees).
    ``amp_dtype``: the autocast dtype of the real training step (bf16 halves a step's time on
    some CPUs, so timing it in float32 would resolve too few epochs)."""
    from cnnbench.train.ema import ModelEMA

    trial = copy.deepcopy(model).train()
    optimizer = make_optimizer(trial)
    ema = ModelEMA(trial, ema_decay) if ema_decay else None
    times: list[float] = []
    warm = 0
    while len(times) < timed or sum(times) < min_seconds:
        t0 = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            raise ConfigError("the training split has too few batches to time a budget") from None
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):  # fmt: skip
            loss = loss_fn(trial(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update()
        sync()
        elapsed = time.perf_counter() - t0
        if warm < warmup:
            warm += 1
            if elapsed >= max_seconds / 4:  # slow steps: one warm-up step is enough
                warm = warmup
            continue
        times.append(elapsed)
        if len(times) >= 2 and sum(times) >= max_seconds:
            break
    return sum(times) / len(times)  # the mean: an epoch pays for its slow steps too


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
