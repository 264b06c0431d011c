"""Typed, validated configuration of one training run.

Every field carries its unit in its description; the CLI builds its ``--help`` from these
descriptions, so this file is the single source of truth for what an option means.
Unknown keys and bad values fail here, before any data is read or any model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A run or study configuration that cannot be used; the message is one line for the user."""


OptimizerName = Literal["sgd", "adam", "adamw", "adadelta"]
ScheduleName = Literal["constant", "step", "cosine", "onecycle"]


class TransferConfig(BaseModel):
    """Fine-tune from a parent run instead of training from scratch (see ``cnnbench.train.transfer``)."""

    model_config = ConfigDict(extra="forbid")

    parent: str = Field(description="parent run directory (or a checkpoint file) to start from")
    policy: Literal["head", "last-k", "full", "gradual"] = Field(
        "last-k",
        description="what trains: head only, the last k backbone groups + head, everything, "
        "or gradual unfreezing (one more group every `gradual_every` epochs)",
    )
    k: int = Field(2, ge=1, description="backbone groups unfrozen by the last-k policy")
    gradual_every: int = Field(
        1, ge=1, description="epochs between two unfreezing steps of the gradual policy"
    )
    backbone_lr_mult: float = Field(
        0.1, gt=0, le=1, description="backbone learning rate as a fraction of --lr"
    )
    checkpoint: Literal["best", "last"] = Field(
        "best", description="which checkpoint of the parent run to load"
    )


class RunConfig(BaseModel):
    """One training run: model, data, optimisation, and where it runs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str | None = Field(
        None,
        description="run name, the folder under --runs-dir (default: model-dataset-optimizer-lr-seed)",
    )
    # --- model
    model: str = Field("mobilenetv2_reduced", description="architecture (see `cnnbench models`)")
    model_args: dict[str, Any] = Field(
        default_factory=dict,
        description="extra keyword arguments of the model builder, e.g. {width_mult: 0.5}",
    )
    # --- data
    dataset: str = Field("cifar10", description="cifar10, cifar100 or imagefolder")
    data_dir: str | None = Field(
        None, description="where the data is (default: $CNNBENCH_DATA, else the user cache)"
    )
    download: bool = Field(False, description="download CIFAR with torchvision if not found")
    image_size: int = Field(32, ge=8, le=1024, description="input size in pixels (imagefolder)")
    label_kind: Literal["fine", "coarse"] = Field(
        "fine", description="CIFAR-100 labels: 100 fine classes or 20 coarse superclasses"
    )
    val_size: int = Field(
        5000, ge=0, description="images held out of the training split for validation"
    )
    train_subset: int | None = Field(
        None, ge=1, description="train on a seeded random subset of this many images"
    )
    test_subset: int | None = Field(
        None, ge=1, description="evaluate on a seeded random subset of this many test images"
    )
    augment: bool = Field(True, description="random crop + horizontal flip while training")
    crop_padding: int = Field(4, ge=0, description="padding of the random crop, in pixels")
    # --- optimisation
    epochs: int = Field(15, ge=1, description="passes over the training split")
    batch_size: int = Field(128, ge=1, description="images per optimizer step")
    optimizer: OptimizerName = Field("sgd", description="sgd, adam, adamw or adadelta")
    lr: float = Field(0.01, gt=0, description="peak learning rate (per optimizer step)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD)")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay coefficient")
    schedule: ScheduleName = Field(
        "constant", description="learning-rate schedule: constant, step, cosine or onecycle"
    )
    warmup_epochs: float = Field(
        0.0, ge=0, description="linear warm-up from 0 to --lr, in epochs (fractions allowed)"
    )
    step_every: int = Field(30, ge=1, description="step schedule: epochs between decays")
    step_gamma: float = Field(0.1, gt=0, le=1, description="step schedule: decay factor")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the loss")
    seed: int = Field(0, ge=0, description="seed of the split, the initialisation and the batches")
    # --- execution
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="where to train (auto: CUDA if present, else CPU)"
    )
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="mixed precision (auto: bf16 on CUDA, off on CPU)"
    )
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels_last memory format (auto: on; faster on CPU and GPU)"
    )
    compile: bool = Field(False, description="torch.compile the model (GPU; slow to start)")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for PyTorch (default: all cores)"
    )
    eval_batch_size: int = Field(500, ge=1, description="images per batch when evaluating")
    checkpoint_every: int = Field(
        1, ge=1, description="write last.pt every this many epochs (best.pt on every new best)"
    )
    transfer: TransferConfig | None = Field(
        None, description="fine-tune from a parent run (see `cnnbench transfer --help`)"
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        from cnnbench.models import list_models

        if v not in list_models():
            raise ValueError(f"unknown model {v!r}; choose one of: {', '.join(list_models())}")
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from cnnbench.data import list_datasets

        base = v.split(":", 1)[0]
        if base not in list_datasets():
            raise ValueError(f"unknown dataset {v!r}; choose one of: {', '.join(list_datasets())}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be shorter than epochs ({self.epochs})"
            )
        return self

    def run_name(self) -> str:
        """The run folder's name: ``name`` if set, else one derived from the settings."""
        if self.name:
            return self.name
        ds = self.dataset.split(":", 1)[0]
        return f"{self.model}-{ds}-{self.optimizer}-lr{self.lr:g}-s{self.seed}"


def format_validation_error(err: ValidationError) -> str:
    """One line per problem, ``field: message``, without pydantic's URLs."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown option"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML file's content; ConfigError (one line) if it is missing or not valid YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__})") from None


def load_config(source: str | Path | dict[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """Build a RunConfig from a YAML file or a dict, then apply ``overrides`` (None = not given).

    Raises ConfigError with a one-line message on any unknown key or bad value.
    """
    data: dict[str, Any] = {}
    if isinstance(source, dict):
        data = dict(source)
    elif source is not None:
        path = Path(source)
        loaded = read_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of options, got {type(loaded).__name__}")
        data = loaded
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


def dump_config(config: RunConfig, path: Path) -> None:
    """Write the resolved config as YAML (what `cnnbench train --config` reads back)."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
