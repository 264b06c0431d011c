"""Typed, validated configuration of one training run.

Every field carries its unit in its description; the CLI builds its ``--help`` from these
descriptions, so this file is the single source of truth for what an option means.
Unknown keys and bad values fail here, before any data is read or any model is built.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnbench.train.errors import ConfigError, read_yaml
from cnnbench.train.recipes import recipe_values

__all__ = ["ConfigError", "RunConfig", "TransferConfig", "load_config", "read_yaml"]


OptimizerName = Literal["sgd", "adam", "adamw", "adadelta"]
ScheduleName = Literal["constant", "step", "cosine", "linear", "onecycle"]

# Marks a field that never changes a number the run produces (where it runs, how often it
# checkpoints, ...): such a field may differ between a run and its resumption, and it is not
# part of a study's run names or comparisons.
EXECUTION_ONLY = {"affects_results": False}


def execution_only_fields() -> frozenset[str]:
    """Names of the RunConfig fields marked ``EXECUTION_ONLY``."""
    return frozenset(
        name
        for name, f in RunConfig.model_fields.items()
        if isinstance(f.json_schema_extra, dict)
        and f.json_schema_extra.get("affects_results") is False
    )


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


class Replan(BaseModel):
    """After epoch ``after_epoch`` a budget run changed its plan from ``from_epochs`` to
    ``to_epochs``; the schedule decays from where it was to zero at the new end
    (``cnnbench.train.optim.lr_factor``). Recorded so that the run can be reproduced."""

    model_config = ConfigDict(extra="forbid")

    after_epoch: int = Field(ge=1, description="the last epoch trained under the old plan")
    from_epochs: int = Field(ge=1, description="epochs planned before")
    to_epochs: int = Field(ge=1, description="epochs planned after")

    @model_validator(mode="after")
    def _after_is_inside(self) -> Replan:
        if not self.after_epoch < min(self.from_epochs, self.to_epochs):
            raise ValueError(
                f"a re-plan after epoch {self.after_epoch} must leave epochs to train under "
                f"both plans ({self.from_epochs} -> {self.to_epochs})"
            )
        return self


class RunConfig(BaseModel):
    """One training run: model, data, optimisation, and where it runs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str | None = Field(
        None,
        description="run name, the folder under --runs-dir (default: model-dataset-optimizer-lr-seed)",
        json_schema_extra=EXECUTION_ONLY,
    )
    recipe: str | None = Field(
        None,
        description="named recipe (fast, paper, standard) or a recipe YAML file; its values "
        "fill every option not given (see `cnnbench recipes`)",
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
        None,
        description="where the data is (default: $CNNBENCH_DATA, else the user cache)",
        json_schema_extra=EXECUTION_ONLY,
    )
    download: bool = Field(
        False,
        description="download CIFAR with torchvision if not found",
        json_schema_extra=EXECUTION_ONLY,
    )
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
    crop_padding: int = Field(
        4, ge=0, description="padding of the random crop (= largest translation), in pixels"
    )
    cutout: int = Field(
        0,
        ge=0,
        description="Cutout (DeVries & Taylor 2017): side in pixels of a square set to the "
        "mean colour at a random place in each training image, every pass; 0 = off",
    )
    flip: Literal["random", "alternate"] = Field(
        "random",
        description="horizontal flips: random per image and epoch, or alternate (random in "
        "epoch 1, then each image flipped every other epoch)",
    )
    degrade: Literal["off", "noise", "blur", "noise-blur"] = Field(
        "off",
        description="camera degradations while training (robustness): Gaussian noise "
        "(std ~ U(0, 0.1)) and/or Gaussian blur (sigma ~ U(0.3, 1.5) px), each on a "
        "degrade_p fraction of the images",
    )
    degrade_p: float = Field(
        0.5, gt=0, le=1, description="probability that each degradation hits an image"
    )
    # --- optimisation
    epochs: int = Field(15, ge=1, description="passes over the training split")
    budget_minutes: float | None = Field(
        None,
        gt=0,
        description="train for this many minutes of this machine: a few timed batches set "
        "--epochs (written to config.yaml), the schedule follows",
    )
    budget_replans: list[Replan] = Field(
        default_factory=list,
        description="written by a --budget-minutes run, not given: where the run re-planned its "
        "epochs because its real epochs were slower or faster than the timed steps said",
    )
    batch_size: int = Field(128, ge=1, description="images per optimizer step")
    optimizer: OptimizerName = Field("sgd", description="sgd, adam, adamw or adadelta")
    lr: float = Field(
        0.01, gt=0, description="peak learning rate, per --lr-batch images (default: per batch)"
    )
    lr_batch: int | None = Field(
        None,
        ge=1,
        description="images per batch that --lr is stated for; the rate is scaled linearly "
        "to --batch-size (unset: --lr is the rate of one --batch-size step)",
    )
    bias_lr_mult: float = Field(
        1.0,
        gt=0,
        description="learning-rate multiplier of 1-D parameters (BatchNorm and biases), "
        "which are not weight-decayed",
    )
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
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="exponential moving average of the weights, decay per optimizer step "
        "(e.g. 0.99); validation, selection and the test use the averaged weights",
    )
    tta: Literal["off", "flip", "flip-translate"] = Field(
        "off",
        description="test-time augmentation of the final test: flip (2 views) or "
        "flip-translate (6 views, +-1 px); the plain figure is always reported too",
    )
    bn_momentum: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="BatchNorm running-stat momentum (PyTorch's sense; default: model's)",
    )
    bn_freeze_scale: bool = Field(
        False, description="freeze every BatchNorm scale at 1 (only the shift is learned)"
    )
    teacher: str | None = Field(
        None,
        description="knowledge distillation: a zoo model, finished run directory or .pt "
        "checkpoint of this dataset whose flip-averaged predictions on the training split "
        "(computed once, inside the budget) the model also learns from",
    )
    distill_alpha: float = Field(
        0.9,
        ge=0,
        le=1,
        description="weight of the teacher's soft targets in the loss (with --teacher)",
    )
    distill_temperature: float = Field(
        4.0, gt=0, description="softmax temperature of the distillation term (with --teacher)"
    )
    data_init_images: int = Field(
        5000,
        ge=1,
        description="training images a model's data-dependent init sees (e.g. fastnet's "
        "whitening stem); never validation or test images",
    )
    seed: int = Field(0, ge=0, description="seed of the split, the initialisation and the batches")
    # --- execution
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="where to train (auto: CUDA if present, else CPU)"
    )
    amp: Literal["auto", "fastest", "off", "bf16", "fp16"] = Field(
        "auto",
        description="mixed precision of the training step (auto: bf16 on CUDA and on CPUs with "
        "AMX bf16 units, else off; fastest: time a few real steps in float32 and in bf16 and "
        "train in the faster, written to config.yaml); CPU evaluation is always float32",
    )
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels_last memory format (auto: on; faster on CPU and GPU)"
    )
    compile: bool = Field(False, description="torch.compile the model (GPU; slow to start)")
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for PyTorch (default: all cores)",
        json_schema_extra=EXECUTION_ONLY,
    )
    eval_batch_size: int = Field(
        500,
        ge=1,
        description="images per batch when evaluating",
        json_schema_extra=EXECUTION_ONLY,
    )
    checkpoint_every: int = Field(
        1,
        ge=1,
        description="write last.pt every this many epochs (best.pt on every new best)",
        json_schema_extra=EXECUTION_ONLY,
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
        plans = self.budget_replans
        for prev, nxt in itertools.pairwise(plans):
            if not (prev.after_epoch < nxt.after_epoch and prev.to_epochs == nxt.from_epochs):
                raise ValueError(
                    "budget_replans must follow one another: each after a later epoch, "
                    "starting from the epochs the previous one planned"
                )
        if plans and plans[-1].to_epochs != self.epochs:
            raise ValueError(
                f"the last budget re-plan ends at {plans[-1].to_epochs} epochs, "
                f"but epochs is {self.epochs}"
            )
        return self

    @property
    def planned_epochs(self) -> int:
        """The epochs first planned (the budget's resolution; ``epochs`` without re-plans):
        the warm-up and the schedule's first segment are laid out on them."""
        return self.budget_replans[0].from_epochs if self.budget_replans else self.epochs

    @property
    def effective_lr(self) -> float:
        """The peak learning rate of one --batch-size step (--lr scaled from --lr-batch)."""
        if self.lr_batch is None:
            return self.lr
        return self.lr * self.batch_size / self.lr_batch

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
    if data.get("recipe"):
        model = data.get("model", RunConfig.model_fields["model"].default)
        data = {**recipe_values(data["recipe"], model), **data}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


def dump_config(config: RunConfig, path: Path) -> None:
    """Write the resolved config as YAML (what `cnnbench train --config` reads back)."""
    from cnnbench.fileio import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
