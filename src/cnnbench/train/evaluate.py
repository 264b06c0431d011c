"""`cnnbench evaluate`: test accuracy, per-class accuracy and the confusion matrix of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnbench.data import BatchIterator
from cnnbench.rundir import checkpoint_dataset, load_model_from
from cnnbench.train.loop import predict_logits


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts; row = true class, column = predicted class."""
    idx = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def evaluate_run(
    run: str | Path,
    *,
    checkpoint: str = "best",
    data_dir: str | None = None,
    batch_size: int = 500,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a run's checkpoint (``best`` or ``last``; or a .pt file given as ``run``) on
    the full test split of the dataset it was trained on."""
    run = Path(run)
    model, ckpt = load_model_from(run, checkpoint)
    ds = checkpoint_dataset(ckpt, data_dir, show_progress=True)
    dev = torch.device(device)
    model.to(dev)
    mean, std = tuple(ckpt["mean"]), tuple(ckpt["std"])
    batches = BatchIterator(
        ds.x_test,
        ds.y_test,
        batch_size,
        shuffle=False,
        augment=None,
        mean=mean,
        std=std,
        device=dev,
    )
    logits, y = predict_logits(model, batches, device=dev)
    pred = logits.argmax(1)
    k = len(ckpt["classes"])
    cm = confusion_matrix(y, pred, k)
    per_class = (cm.diag().float() / cm.sum(1).clamp(min=1).float()).tolist()
    return {
        "run": str(run),
        "checkpoint": checkpoint,
        "epoch": ckpt["epoch"],
        "test_acc": (pred == y).float().mean().item(),
        "test_loss": torch.nn.functional.cross_entropy(logits, y).item(),
        "classes": list(ckpt["classes"]),
        "per_class_acc": per_class,
        "confusion_matrix": cm.tolist(),
    }
