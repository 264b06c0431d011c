"""Training: typed config, optimizers and schedules, the loop, checkpoints, run directories.

Names are imported lazily (PEP 562) so that ``cnnbench.train.config`` (pydantic only) can be
used, e.g. to build the CLI, without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it (a run directory's state is cnnbench.rundir's concern).
_EXPORTS = {
    "CheckpointError": "cnnbench.train.checkpoint",
    "load_checkpoint": "cnnbench.train.checkpoint",
    "model_from_checkpoint": "cnnbench.train.checkpoint",
    "save_checkpoint": "cnnbench.train.checkpoint",
    "ConfigError": "cnnbench.train.config",
    "RunConfig": "cnnbench.train.config",
    "TransferConfig": "cnnbench.train.config",
    "load_config": "cnnbench.train.config",
    "evaluate_run": "cnnbench.train.evaluate",
    "RunExistsError": "cnnbench.train.trainer",
    "train": "cnnbench.train.trainer",
    "is_complete": "cnnbench.rundir",
    "read_summary": "cnnbench.rundir",
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
    from cnnbench.rundir import is_complete, read_summary
    from cnnbench.train.checkpoint import (
        CheckpointError,
        load_checkpoint,
        model_from_checkpoint,
        save_checkpoint,
    )
    from cnnbench.train.config import ConfigError, RunConfig, TransferConfig, load_config
    from cnnbench.train.evaluate import evaluate_run
    from cnnbench.train.trainer import RunExistsError, train


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cnnbench.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
