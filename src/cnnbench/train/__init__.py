"""Training: typed config, optimizers and schedules, the loop, checkpoints, run directories."""

from cnnbench.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from cnnbench.train.config import ConfigError, RunConfig, TransferConfig, load_config
from cnnbench.train.evaluate import evaluate_run
from cnnbench.train.trainer import RunExistsError, is_complete, read_summary, train

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
