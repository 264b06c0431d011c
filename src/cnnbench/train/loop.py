"""The training step and evaluation: small, quiet, and free of host syncs per batch.

Both functions return metrics and print nothing; ``cnnbench.train.trainer`` logs, checkpoints
and shows progress. Running sums stay on the device and are read once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision context (a no-op when ``dtype`` is None)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One pass over ``batches``: mean train loss and accuracy (a fraction), and their sums."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in batches:
        with autocast(device, amp_dtype):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().float() * y.numel()
        correct += (logits.detach().argmax(1) == y).sum()
        seen += y.numel()
        if on_step is not None:
            on_step()
    if seen == 0:
        raise ValueError("no training batches: the training split is empty")
    # One host sync per epoch; sums are returned too so ranks of a DDP job can add them up.
    loss_total, correct_total = loss_sum.item(), correct.item()
    return {
        "train_loss": loss_total / seen,
        "train_acc": correct_total / seen,
        "loss_sum": loss_total,
        "correct": correct_total,
        "samples": seen,
    }


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on the CPU) and labels of every batch, in order."""
    model.eval()
    outs, ys = [], []
    for x, y in batches:
        with autocast(device, amp_dtype):
            outs.append(model(x).float())
        ys.append(y)
    if not outs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(outs).cpu(), torch.cat(ys).cpu()


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Mean cross-entropy (no smoothing) and accuracy over ``batches``; NaN if empty."""
    logits, y = predict_logits(model, batches, device=device, amp_dtype=amp_dtype)
    if y.numel() == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return {"loss": loss, "acc": acc}
