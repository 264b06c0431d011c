"""Self-describing checkpoints, written atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors and primitives: the model's state dict and the spec
that rebuilds it (``create_model(**model_spec)``), the resolved config, the epoch, optimizer
and scheduler state, RNG states, and what a deployed model needs (classes, mean, std).
It always holds the plain module's weights, never a compiled or DDP wrapper's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnbench.fileio import write_atomic


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or not one of ours."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DistributedDataParallel wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: a killed process leaves the old file intact."""
    write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (no pickled code). A run directory means its ``best.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({e.__class__.__name__})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_spec" not in ckpt:
        raise CheckpointError(f"{path}: not a cnnbench checkpoint (no model / model_spec)")
    return ckpt


def model_from_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, load its weights, return it in eval mode."""
    from cnnbench.models import create_model

    ckpt = load_checkpoint(path, map_location)
    model = create_model(**ckpt["model_spec"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt
