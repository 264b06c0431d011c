"""Training: typed config, optimizers and schedules, the loop, checkpoints, run directories.

Names are imported lazily (PEP 562) so that ``cnnbench.train.config`` (pydantic only) can be
used, e.g. to build the CLI, without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "model_from_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ConfigError": "config",
    "RunConfig": "config",
    "TransferConfig": "config",
    "load_config": "config",
    "evaluate_run": "evaluate",
    "RunExistsError": "trainer",
    "is_complete": "trainer",
    "read_summary": "trainer",
    "train": "trainer",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "RunConfig",
    "RunExistsError",
    "TransferConfig",
    "evaluate_run",
    "is_complete",
    "load_checkpoint",
    "load_config",
    "model_from_checkpoint",
    "read_summary",
    "save_checkpoint",
    "train",
]

if TYPE_CHECKING:
    from cnnbench.train.checkpoint import (
        CheckpointError,
        load_checkpoint,
        model_from_checkpoint,
        save_checkpoint,
    )
    from cnnbench.train.config import ConfigError, RunConfig, TransferConfig, load_config
    from cnnbench.train.evaluate import evaluate_run
    from cnnbench.train.trainer import RunExistsError, is_complete, read_summary, train


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cnnbench.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cnnbench.train.{_EXPORTS[name]}"), name)
