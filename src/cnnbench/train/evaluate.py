"""`cnnbench evaluate`: test accuracy, per-class accuracy and the confusion matrix of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnbench.data import BatchIterator, load_dataset
from cnnbench.train.checkpoint import model_from_checkpoint
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
    """Evaluate a run's checkpoint on the full test split of its dataset."""
    run = Path(run)
    model, ckpt = model_from_checkpoint(run / f"{checkpoint}.pt" if run.is_dir() else run)
    cfg = ckpt["config"]
    ds = load_dataset(
        cfg["dataset"], data_dir=data_dir or cfg.get("data_dir"), download=False,
        image_size=cfg.get("image_size", 32), label_kind=cfg.get("label_kind", "fine"),
    )  # fmt: skip
    dev = torch.device(device)
    model.to(dev)
    batches = BatchIterator(
        ds.x_test, ds.y_test, batch_size, shuffle=False, augment=None,
        mean=tuple(ckpt["mean"]), std=tuple(ckpt["std"]), device=dev,
    )  # fmt: skip
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
