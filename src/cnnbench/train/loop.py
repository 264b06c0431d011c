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
    batches: Iterable[tuple[torch.Tensor, ...]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loss_fn: Callable[..., torch.Tensor],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One pass over ``batches``: mean train loss and accuracy (a fraction), and their sums.

    A batch is ``(x, y)`` or ``(x, y, *targets)``; ``loss_fn(logits, y, *targets)``."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y, *extra in batches:  # extra: per-image targets such as a teacher's (distill)
        with autocast(device, amp_dtype):
            logits = model(x)
            loss = loss_fn(logits, y, *extra)
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


# Test-time augmentation: (views, weight) per mode. A view is (flip, dy, dx): a horizontal
# flip and a 1-pixel translation (reflect padding, as the training translations). The
# translated pairs weigh half as much as the untranslated one (the fast CIFAR trainers' TTA).
TTA_VIEWS: dict[str, list[tuple[bool, int, int, float]]] = {
    "off": [(False, 0, 0, 1.0)],
    "flip": [(False, 0, 0, 0.5), (True, 0, 0, 0.5)],
    "flip-translate": [
        (False, 0, 0, 0.25), (True, 0, 0, 0.25),
        (False, -1, -1, 0.125), (True, -1, -1, 0.125),
        (False, 1, 1, 0.125), (True, 1, 1, 0.125),
    ],
}  # fmt: skip


def tta_view(x: torch.Tensor, flip: bool, dy: int, dx: int) -> torch.Tensor:
    """``x`` (N, C, H, W) flipped left-right and/or moved by (dy, dx) pixels, reflect padding."""
    if flip:
        x = x.flip(-1)
    if dy or dx:
        p = max(abs(dy), abs(dx))
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x, (p, p, p, p), mode="reflect")
        x = padded[..., p - dy : p - dy + h, p - dx : p - dx + w]
        x = x.contiguous(memory_format=torch.channels_last) if padded.is_contiguous(
            memory_format=torch.channels_last) else x.contiguous()  # fmt: skip
    return x


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    tta: str = "off",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on the CPU) and labels of every batch, in order.

    With ``tta``, the logits are the weighted mean over the views of ``TTA_VIEWS[tta]``.
    """
    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {sorted(TTA_VIEWS)}, got {tta!r}")
    views = TTA_VIEWS[tta]
    model.eval()
    outs, ys = [], []
    for x, y in batches:
        with autocast(device, amp_dtype):
            if len(views) == 1:
                outs.append(model(x).float())
            else:
                outs.append(sum(w * model(tta_view(x, f, dy, dx)).float()
                                for f, dy, dx, w in views))  # fmt: skip
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
    tta: str = "off",
) -> dict[str, float]:
    """Mean cross-entropy (no smoothing), accuracy and how often each class was predicted
    (``pred_counts``) over ``batches``; NaN if empty."""
    logits, y = predict_logits(model, batches, device=device, amp_dtype=amp_dtype, tta=tta)
    if y.numel() == 0:
        return {"loss": float("nan"), "acc": float("nan"), "pred_counts": []}
    loss = nn.functional.cross_entropy(logits, y).item()
    pred = logits.argmax(1)
    acc = (pred == y).float().mean().item()
    counts = torch.bincount(pred, minlength=logits.shape[1]).tolist()
    return {"loss": loss, "acc": acc, "pred_counts": counts}
