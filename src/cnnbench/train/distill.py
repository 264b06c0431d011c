"""Knowledge distillation: a small student also learns a trained teacher's predictions.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network": the student's
loss is the usual cross-entropy on the labels plus the KL divergence between the teacher's
and the student's predictions softened by a temperature T (scaled by T**2, so the soft
term's gradients keep their size as T grows)::

    (1 - alpha) * CE(student, labels; label smoothing) + alpha * T**2 * KL(teacher_T || student_T)

On a CPU a teacher's forward pass in every step would cost more than the student's whole
step (fastnet_base, 118 M MACs, teaching fastnet_tiny), so the teacher's logits are computed
once, before the first epoch, on the training split only (never validation or test), in
float32 and averaged over each image and its mirror (flip TTA: flips are the one
augmentation whose targets are cached exactly). The small random translations of the
training step (+-2 px) see the untranslated image's targets: the "consistent teacher" of
Beyer et al. 2022 would need the teacher in every step. The logits are written to the run
directory (``teacher.pt``) so that a resumed run distils from the very same targets, and
their cost is part of a ``--budget-minutes`` budget. The teacher's own training is not.

A teacher is a zoo name (``fastnet_base-cifar10``; its weights are checked against its
card), a finished run directory (its best checkpoint) or a ``.pt`` checkpoint. It must have
been trained on the student's dataset, classes, input size and normalisation.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnbench.train.checkpoint import CheckpointError
from cnnbench.train.errors import ConfigError

__all__ = [
    "TEACHER_FILE", "DistillLoss", "check_teacher", "load_teacher", "save_teacher_logits",
    "subset_facts", "teacher_logits", "tempered_log_probs",
]  # fmt: skip

TEACHER_FILE = "teacher.pt"


class DistillLoss(nn.Module):
    """Cross-entropy on the labels, plus (with ``teacher_logp``) the softened KL term.

    ``teacher_logp``: the teacher's log-probabilities at ``temperature`` (log_softmax of
    logits / T), one row per image of the batch. Without it the loss is the plain
    label-smoothed cross-entropy (what the budget and precision probes time: the KL term's
    cost is a few element-wise ops on (batch, classes)).
    """

    def __init__(self, alpha: float, temperature: float, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.alpha, self.temperature = alpha, temperature
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(
        self, logits: torch.Tensor, y: torch.Tensor, teacher_logp: torch.Tensor | None = None
    ) -> torch.Tensor:
        hard = self.ce(logits, y)
        if teacher_logp is None or self.alpha == 0:
            return hard
        t = self.temperature
        student_logp = nn.functional.log_softmax(logits.float() / t, dim=1)
        soft = nn.functional.kl_div(
            student_logp, teacher_logp, reduction="batchmean", log_target=True
        )
        return (1 - self.alpha) * hard + self.alpha * t * t * soft


def load_teacher(source: str) -> tuple[nn.Module, dict[str, Any], str]:
    """(teacher model in eval mode, its checkpoint, sha256 of the checkpoint file).

    ``source``: a ``.pt`` file, a run directory (its best checkpoint; the run must be
    complete) or a zoo model's name (checked against its card's hash).
    """
    from cnnbench import rundir
    from cnnbench.data.sources import sha256_file
    from cnnbench.train.checkpoint import model_from_checkpoint

    path = Path(source)
    if path.is_file():
        model, ckpt = model_from_checkpoint(path)
        return model, ckpt, sha256_file(path)
    try:
        run = rundir.resolve(source)
    except rundir.RunDirError as e:
        raise ConfigError(f"teacher: {e}") from None
    if not run.is_complete():
        raise ConfigError(
            f"teacher: run {run.path} is not complete; finish it with `cnnbench train "
            f"--resume` or pass its {rundir.BEST} to distil from it as it is"
        )
    try:
        model, ckpt = run.load_model("best")  # a zoo model's weights must match its card
    except (rundir.RunDirError, CheckpointError) as e:
        raise ConfigError(f"teacher: {e}") from None
    return model, ckpt, sha256_file(run.checkpoint_path("best"))


def check_teacher(
    ckpt: dict[str, Any],
    *,
    dataset: str,
    classes: list[str],
    input_size: tuple[int, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> None:
    """ConfigError unless the teacher saw the student's data the way the student sees it."""
    name = ckpt.get("model_spec", {}).get("name", "the teacher")
    problems = []
    if ckpt.get("dataset") != dataset:
        problems.append(f"it was trained on {ckpt.get('dataset')!r}, this run on {dataset!r}")
    if list(ckpt.get("classes", [])) != list(classes):
        problems.append("its classes differ from this run's")
    if ckpt.get("input_size") and tuple(ckpt["input_size"]) != tuple(input_size):
        problems.append(f"its input size is {ckpt['input_size']}, this run's {list(input_size)}")
    for key, ours in (("mean", mean), ("std", std)):
        theirs = ckpt.get(key)
        if theirs is not None and not all(
            math.isclose(a, b, abs_tol=1e-6) for a, b in zip(theirs, ours, strict=True)
        ):
            problems.append(f"its normalisation {key} {theirs} is not this run's {list(ours)}")
    if problems:
        raise ConfigError(f"teacher {name}: " + "; ".join(problems))


def teacher_logits(
    teacher: str, data: Any, cache: Path, device: torch.device
) -> tuple[torch.Tensor, dict[str, Any]]:
    """(the teacher's float32 logits, one row per training image of ``data``; facts).

    Read from ``cache`` when a previous start of this run wrote it (the same training
    images), else computed (see the module docstring). The facts go in the summary: the
    teacher, its checkpoint's hash, its accuracy on the training split, seconds spent.
    """
    from cnnbench.train.loop import predict_logits

    cached = _read_cache(cache, data)
    if cached is not None:
        return cached[0], {**cached[1], "cached": True}
    t0 = time.perf_counter()
    model, ckpt, sha = load_teacher(teacher)
    check_teacher(ckpt, dataset=data.dataset, classes=data.classes,
                  input_size=tuple(data.x_train.shape[1:]), mean=data.mean,
                  std=data.std)  # fmt: skip
    model = model.to(device)
    if data.channels_last:
        model = model.to(memory_format=torch.channels_last)
    logits, y = predict_logits(model, data.eval_batches(data.x_train, data.y_train),
                               device=device, tta="flip")  # fmt: skip
    facts = {
        "teacher": teacher, "teacher_model": ckpt["model_spec"].get("name"),
        "teacher_sha256": sha, "images": len(y),
        "teacher_train_acc": round((logits.argmax(1) == y).float().mean().item(), 5),
        "train_images_sha256": _images_hash(data),
        "seconds": round(time.perf_counter() - t0, 2), "cached": False,
    }  # fmt: skip
    return logits, facts


def subset_facts(facts: dict[str, Any], logits: torch.Tensor, data: Any) -> dict[str, Any]:
    """``facts`` for the rows ``logits`` of ``data``'s training split (a budget's subset):
    the images, their fingerprint and the teacher's accuracy on them; the seconds stay those
    the teacher spent."""
    y = data.y_train.to(logits.device)
    return {
        **facts, "images": len(y), "train_images_sha256": _images_hash(data),
        "teacher_train_acc": round((logits.argmax(1) == y).float().mean().item(), 5),
    }  # fmt: skip


def tempered_log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log_softmax(logits / T): the targets ``DistillLoss`` takes, computed once."""
    return nn.functional.log_softmax(logits.float() / temperature, dim=1)


def save_teacher_logits(path: Path, logits: torch.Tensor, facts: dict[str, Any]) -> None:
    """Write the teacher's logits and facts where a resumed run finds them."""
    from cnnbench.train.checkpoint import save_checkpoint

    save_checkpoint({"logits": logits.cpu(), "facts": facts}, path)


def _read_cache(path: Path, data: Any) -> tuple[torch.Tensor, dict[str, Any]] | None:
    if not path.is_file():
        return None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    facts = blob["facts"]
    if facts.get("train_images_sha256") != _images_hash(data):
        raise ConfigError(
            f"{path} holds a teacher's logits for other training images; delete it to "
            "compute them again"
        )
    return blob["logits"], facts


def _images_hash(data: Any) -> str:
    """A fingerprint of the training split (images and labels, in order)."""
    h = hashlib.sha256()
    h.update(data.x_train.cpu().numpy().tobytes())
    h.update(data.y_train.cpu().numpy().tobytes())
    return h.hexdigest()
