"""Training to a time budget: time a few real optimizer steps, then resolve the epochs.

``--budget-minutes M`` asks for "as much training as M minutes of this machine allow". The
trainer times ``warmup + timed`` steps on a throw-away copy of the model and optimizer (real
batches, real augmentation, the EMA update included), adds the validation pass, and picks the
largest whole number of epochs that fits; the schedule is then built for that many epochs
and the number is written to ``config.yaml``, so the run is reproducible on any machine with
``--epochs``. When not even one epoch fits, the run trains one epoch on the seeded subset of
training images that fits (``train_subset``, also written to ``config.yaml``). Between one and
``FILL_BELOW`` epochs, rounding down would waste up to half the budget, so the run trains the
next whole number of epochs on the seeded subset that fills it (:func:`plan_budget`). A run
whose steps change cost from epoch to epoch (a gradual transfer child) has each of its states
timed, as far as the budget reaches. The real time is recorded beside the budget in
``summary.json``.

A few seconds of timed steps cannot see a machine that drifts over an hour, so after each
epoch past the warm-up the run compares its real epochs with the budget, and when it would miss
it by more than ``REPLAN_TOLERANCE`` it re-plans its epochs (:func:`replanned`; a subset run
keeps its subset): the schedule decays from where it is to zero at the new end, and the
re-plan is written to ``config.yaml`` (``budget_replans``), so the run is still reproducible
from that file.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from cnnbench.train.config import ConfigError, Replan, RunConfig
from cnnbench.train.optim import warmup_steps

FILL_BELOW = 4  # below this many epochs, fill the budget with a subset instead of rounding down


def plan_budget(
    budget_s: float,
    step_s: float | Callable[[int], float],
    eval_s: float,
    n_train: int,
    batch_size: int,
    *,
    steady_from: int = 1,
) -> tuple[int, int | None]:
    """(epochs, train_subset or None) that fill ``budget_s`` as closely as whole epochs allow.

    ``step_s`` is the time of one step, or a function of the (1-based) epoch that gives it for
    a run whose steps get dearer as it goes (a gradual transfer child unfreezes one more group
    every few epochs); from epoch ``steady_from`` on the step time no longer changes. The
    function is asked only about the epochs the budget reaches, and the first of those that it
    does not (each answer may cost a timing on this machine).

    Epoch e costs ``ceil(n / batch) * step_s(e) + eval_s``. At least ``FILL_BELOW`` full
    epochs: the whole ones that fit, on every image (at most a fifth of the budget unused).
    Fewer: the next whole number of epochs, each on the subset of images that fits (never
    fewer than one batch), which uses the budget instead of rounding a 1.9-epoch budget down
    to one epoch.
    """
    if min(budget_s, n_train, batch_size, steady_from) <= 0 or eval_s < 0:
        raise ValueError(
            f"budget, images, batch size and steady epoch must be > 0, got "
            f"{budget_s}, {n_train}, {batch_size}, {steady_from}"
        )
    step_of = step_s if callable(step_s) else (lambda _epoch: step_s)
    steps = math.ceil(n_train / batch_size)

    def epoch_cost(epoch: int) -> float:  # every step time used passes through here
        s = step_of(epoch)
        if s <= 0:
            raise ValueError(f"step time must be > 0, got {s} for epoch {epoch}")
        return steps * s + eval_s

    fits = _epochs_that_fit(budget_s, epoch_cost, steady_from)
    if fits >= FILL_BELOW:
        return math.floor(fits + 1e-9), None
    epochs = max(1, math.ceil(fits - 1e-9))
    mean_step = (
        step_s
        if not callable(step_s)
        else math.fsum(step_of(e) for e in range(1, epochs + 1)) / epochs
    )
    per_epoch = budget_s / epochs - eval_s
    subset = int(max(0.0, per_epoch) / (mean_step / batch_size))
    subset = max(min(batch_size, n_train), min(n_train, subset))
    return epochs, (subset if subset < n_train else None)


def _epochs_that_fit(
    budget_s: float, epoch_cost: Callable[[int], float], steady_from: int
) -> float:
    """How many epochs (a real number) the budget pays for: the epochs before ``steady_from``
    one by one, then every later epoch at the cost of ``steady_from``'s."""
    spent = 0.0
    for epoch in range(1, steady_from):
        cost = epoch_cost(epoch)
        if spent + cost >= budget_s:
            return epoch - 1 + (budget_s - spent) / cost
        spent += cost
    return steady_from - 1 + (budget_s - spent) / epoch_cost(steady_from)


REPLAN_TOLERANCE = 0.05  # re-plan when the real epochs would miss the budget by more than this


def replan(
    budget_s: float,
    spent_s: float,
    epoch: int,
    epochs: int,
    epoch_s: float,
    *,
    tolerance: float = REPLAN_TOLERANCE,
) -> int | None:
    """The epochs a budget run should now plan for after ``epoch`` of ``epochs``, or None to
    keep its plan.

    The timed steps that resolved the plan are a few seconds of a run that lasts minutes to
    hours, and a shared machine drifts: a 30-minute budget whose epochs slowed from 17 to 20 s
    ran 34.5 minutes. After each epoch the run projects its end from ``spent_s`` (steps and
    validation so far) and ``epoch_s`` (what an epoch costs now): more than ``tolerance`` of
    the budget over it, it keeps the whole epochs that still fit (at least one, so the
    schedule can end); one more epoch fitting with ``tolerance`` to spare, it adds the epochs
    that fit. Whole epochs only, as the plan.
    """
    if epoch_s <= 0 or not 0 < epoch < epochs:
        raise ValueError(
            f"need 0 < epoch < epochs and epoch_s > 0, got {epoch}, {epochs}, {epoch_s}"
        )
    left = budget_s - spent_s
    fit = math.floor(max(0.0, left) / epoch_s + 1e-9)
    if spent_s + (epochs - epoch) * epoch_s > budget_s * (1 + tolerance):
        new = epoch + max(1, fit)
    elif (epochs - epoch + 1) * epoch_s * (1 + tolerance) <= left:
        new = epoch + fit
    else:
        return None
    return new if new != epochs else None


RECENT_EPOCHS = 3  # what an epoch costs now: the mean of the last few


def replanned(
    config: RunConfig,
    calibration: dict[str, Any] | None,
    history: list[dict[str, Any]],
    spent_s: float,
    steps_per_epoch: int,
) -> tuple[RunConfig, float] | None:
    """(the config with its epochs re-planned, the epoch time that decided it) after the last
    epoch in ``history``, or None to keep the plan (:func:`replan`).

    A run on a budget's subset of the training split re-plans its epochs too, on the same
    subset (its timed steps can be as wrong as anyone's: the reduced MobileNetV2's 30-minute
    budget planned 3 epochs whose first ran at a pace of about 21 minutes for all three).
    Never inside its warm-up (which is laid out on the first plan), never while a gradual
    transfer child's steps still change cost, and at most once after each epoch (a resumed
    run does not re-decide an epoch it has decided)."""
    epoch = len(history)
    if config.budget_minutes is None or calibration is None:
        return None
    steady_from = calibration.get("steady_from", 1)
    if not 0 < epoch < config.epochs or epoch < steady_from:
        return None
    if epoch * steps_per_epoch < warmup_steps(config, steps_per_epoch):
        return None
    if config.budget_replans and epoch <= config.budget_replans[-1].after_epoch:
        return None
    recent = [r for r in history[-RECENT_EPOCHS:] if r["epoch"] >= steady_from]  # steady costs
    epoch_s = math.fsum(r["epoch_time_s"] + r["val_time_s"] for r in recent) / len(recent)
    new = replan(calibration["budget_s"], spent_s, epoch, config.epochs, epoch_s)
    if new is None:
        return None
    plan = Replan(after_epoch=epoch, from_epochs=config.epochs, to_epochs=new)
    replans = [r.model_dump() for r in (*config.budget_replans, plan)]
    updated = {**config.model_dump(), "epochs": new, "budget_replans": replans}
    return RunConfig.model_validate(updated), epoch_s


def endless_batches(
    make: Callable[[], Iterator[tuple[torch.Tensor, ...]]],
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches for timing steps, epoch after epoch, from ``make()`` (one epoch's iterator)."""
    while True:
        yield from make()


def time_steps(
    model: nn.Module,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batches: Iterator[tuple[torch.Tensor, ...]],
    loss_fn: Callable[..., torch.Tensor],
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
            x, y, *extra = next(batches)
        except StopIteration:
            raise ConfigError("the training split has too few batches to time a budget") from None
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):  # fmt: skip
            loss = loss_fn(trial(x), y, *extra)
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
