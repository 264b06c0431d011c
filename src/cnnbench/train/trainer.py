"""One training run, end to end, in four steps: prepare, fit, test, summarise.

``train(config)`` owns the run directory (``cnnbench.rundir``): it refuses to overwrite one,
resumes one exactly from ``last.pt``, logs one line per epoch to ``metrics.jsonl``, keeps
``best.pt`` on validation accuracy, and touches the test set once, at the end, with the best
checkpoint.

- **prepare**: data (uint8 tensors on the device), the model (from scratch, with its
  data-dependent init, or a transfer child: one ``Init`` strategy chosen once), the budget
  (``--budget-minutes`` resolves the epochs), optimizer, schedule, EMA, DDP / compile.
- **fit**: the epoch loop; each epoch trains, validates (the EMA weights when there is an
  EMA), logs, checkpoints.
- **test**: the best checkpoint on the test split, plain and, if asked, with TTA.
- **summarise**: ``summary.json``, written last and atomically.

Exact resume: every epoch draws its shuffling and augmentation from a generator seeded by
(seed, epoch), and reseeds the global RNG (dropout) the same way, so an epoch's result does
not depend on whether the process was restarted before it. ``TrainState`` is what changes
from epoch to epoch; it converts to and from the checkpoint dict.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnbench.data import BatchIterator, ImageDataset, load_dataset, train_val_split
from cnnbench.data.augment import Augment, Cutout, Degrade, normalize
from cnnbench.env import environment
from cnnbench.fileio import write_json_atomic, write_text_atomic
from cnnbench.models import create_model
from cnnbench.profile import count_macs, count_params
from cnnbench.progress import progress as progress_bar
from cnnbench.progress import write as progress_write
from cnnbench.rundir import RunDir, is_complete, read_summary
from cnnbench.train import budget, distill, precision, transfer
from cnnbench.train.checkpoint import load_checkpoint, save_checkpoint, unwrap
from cnnbench.train.config import ConfigError, RunConfig, dump_config, execution_only_fields
from cnnbench.train.distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_from_env
from cnnbench.train.ema import ModelEMA
from cnnbench.train.loop import TTA_VIEWS, evaluate, train_one_epoch
from cnnbench.train.optim import build_optimizer, build_scheduler
from cnnbench.train.precision import amp_dtype_for, eval_amp_dtype
from cnnbench.verdict import did_not_learn

__all__ = ["RunExistsError", "TrainState", "is_complete", "read_summary", "train"]


class RunExistsError(FileExistsError):
    """The run directory exists and neither --resume nor a new --name was given."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for an absent device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but MPS is not available")
    return torch.device(name)


def _check_same_config(old: dict[str, Any], new: RunConfig, run_dir: Path) -> None:
    new_d = new.model_dump(mode="json")
    free = execution_only_fields()
    # A run started before a field existed ran with that field's default.
    defaults = RunConfig().model_dump(mode="json")
    old = {**{k: v for k, v in defaults.items() if k not in old}, **old}
    diffs = [
        f"{k}: {old.get(k)!r} -> {new_d.get(k)!r}"
        for k in sorted(set(old) | set(new_d))
        if k not in free and old.get(k) != new_d.get(k)
    ]
    if diffs:
        raise ConfigError(
            f"cannot resume {run_dir}: it was started with other settings ({'; '.join(diffs)}); "
            "use a new --name instead"
        )


# --- data ------------------------------------------------------------------------------------


class _Data:
    """The run's splits as uint8 tensors on the training device, plus how to batch them."""

    def __init__(
        self, ds: ImageDataset, config: RunConfig, device: torch.device, dist_info: DistInfo
    ):
        self.classes = list(ds.classes)
        self.dataset = config.dataset
        # A teacher's tempered log-probabilities, one row per training image (distillation).
        self.teacher_logp: torch.Tensor | None = None
        mean, std = ds.mean_std()
        self.mean, self.std = tuple(mean), tuple(std)
        n = ds.x_train.shape[0]
        if config.val_size >= n:
            raise ConfigError(f"val_size {config.val_size} leaves no training images (of {n})")
        train_idx, val_idx = train_val_split(n, config.val_size, config.seed)
        gen = torch.Generator().manual_seed(config.seed + 1)
        if config.train_subset is not None and config.train_subset < len(train_idx):
            pick = torch.randperm(len(train_idx), generator=gen)[: config.train_subset]
            train_idx = train_idx[pick.sort().values]
        test_idx = torch.arange(ds.x_test.shape[0])
        if config.test_subset is not None and config.test_subset < len(test_idx):
            test_idx = (
                torch.randperm(len(test_idx), generator=gen)[: config.test_subset].sort().values
            )
        self.train_idx = train_idx  # which of the dataset's images, in this order
        self.x_train, self.y_train = (
            ds.x_train[train_idx].to(device),
            ds.y_train[train_idx].to(device),
        )
        self.x_val, self.y_val = ds.x_train[val_idx].to(device), ds.y_train[val_idx].to(device)
        # The test split stays on the CPU until the very end: it is used once.
        self.x_test, self.y_test = ds.x_test[test_idx], ds.y_test[test_idx]
        self.device = device
        self.seed = config.seed
        # channels_last is faster on both CUDA and the CPU (oneDNN): measured 1.25-1.8x per
        # training step on this project's 2-core CPU (benchmarks/RESULTS.md).
        self.channels_last = config.channels_last != "off"
        self.augment = Augment(crop_padding=config.crop_padding) if config.augment else None
        self.cutout = Cutout(config.cutout) if config.cutout else None
        self.degrade = (Degrade(config.degrade, p=config.degrade_p)
                        if config.degrade != "off" else None)  # fmt: skip
        self.alternate_flips = config.augment and config.flip == "alternate"
        self.batch_size, self.eval_batch_size = config.batch_size, config.eval_batch_size
        self.shard = dist_info.shard

    def epoch_flips(self, epoch: int) -> torch.Tensor | None:
        """Alternating flips: a seeded random bit per image in epoch 1, inverted every epoch."""
        if not self.alternate_flips:
            return None
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 7)
        bits = torch.randint(0, 2, (len(self.x_train),), generator=gen).bool()
        return bits ^ bool((epoch - 1) % 2)

    def train_batches(self, generator: torch.Generator, epoch: int = 1) -> BatchIterator:
        return BatchIterator(
            self.x_train, self.y_train, self.batch_size, shuffle=True, augment=self.augment,
            mean=self.mean, std=self.std, generator=generator, drop_last=False,
            device=self.device, channels_last=self.channels_last, shard=self.shard,
            flips=self.epoch_flips(epoch), degrade=self.degrade, soft=self.teacher_logp,
            cutout=self.cutout,
        )  # fmt: skip

    def eval_batches(self, x: torch.Tensor, y: torch.Tensor) -> BatchIterator:
        return BatchIterator(
            x, y, self.eval_batch_size, shuffle=False, augment=None, mean=self.mean,
            std=self.std, device=self.device, channels_last=self.channels_last,
        )  # fmt: skip

    def init_images(self, n: int) -> torch.Tensor:
        """``n`` normalised images of the training split (never validation or test)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 11)
        pick = torch.randperm(len(self.x_train), generator=gen)[:n].to(self.x_train.device)
        return normalize(self.x_train.index_select(0, pick), self.mean, self.std)


# --- initialisation: scratch or transfer, chosen once ------------------------------------------


class ScratchInit:
    """A fresh model by name; models with ``init_from_data`` see training images first."""

    def check(self, config: RunConfig) -> None:
        pass

    def build(self, config: RunConfig, num_classes: int, data: _Data) -> nn.Module:
        model = create_model(config.model, num_classes=num_classes, **config.model_args)
        init_from_data = getattr(model, "init_from_data", None)
        if callable(init_from_data):
            init_from_data(data.init_images(config.data_init_images))
        return model

    def optimizer_params(self, model: nn.Module, config: RunConfig) -> nn.Module | list[dict]:
        return model

    def on_epoch_start(self, model: nn.Module, config: RunConfig, epoch: int) -> None:
        pass

    def budget_states(self, model: nn.Module, config: RunConfig) -> tuple[int, Callable]:
        """Every epoch trains the same parameters: one step cost to time."""
        return 1, lambda epoch: 0


class TransferInit:
    """The parent's backbone with a fresh head, frozen by the policy (``train.transfer``)."""

    def check(self, config: RunConfig) -> None:
        transfer.check_transfer(config)  # a bad parent must not leave a half-made run dir

    def build(self, config: RunConfig, num_classes: int, data: _Data) -> nn.Module:
        return transfer.build_child(config, num_classes)

    def optimizer_params(self, model: nn.Module, config: RunConfig) -> nn.Module | list[dict]:
        return transfer.optimizer_groups(model, config)

    def on_epoch_start(self, model: nn.Module, config: RunConfig, epoch: int) -> None:
        transfer.on_epoch_start(model, config, epoch)

    def budget_states(self, model: nn.Module, config: RunConfig) -> tuple[int, Callable]:
        return transfer.budget_states(model, config)


def init_strategy(config: RunConfig) -> ScratchInit | TransferInit:
    return TransferInit() if config.transfer is not None else ScratchInit()


def apply_bn_options(model: nn.Module, config: RunConfig, fresh: bool) -> None:
    """BatchNorm momentum and frozen scales (``--bn-momentum``, ``--bn-freeze-scale``)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if config.bn_momentum is not None:
                m.momentum = config.bn_momentum
            if config.bn_freeze_scale and m.weight is not None:
                if fresh:
                    nn.init.ones_(m.weight)
                m.weight.requires_grad_(False)


# --- the state that changes from epoch to epoch ----------------------------------------------


@dataclass
class TrainState:
    """Progress of a run: what a checkpoint must hold besides weights and optimizer state."""

    epoch: int = 0
    best_val: float = -1.0
    best_epoch: int = 0
    train_time_s: float = 0.0  # seconds in training steps
    fit_time_s: float = 0.0  # seconds in whole epochs: steps, validation, checkpoints
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_checkpoint(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "best_val_acc": self.best_val,
                "best_epoch": self.best_epoch, "train_time_s": self.train_time_s,
                "fit_time_s": self.fit_time_s, "metrics": list(self.history)}  # fmt: skip

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> TrainState:
        return cls(epoch=ckpt["epoch"], best_val=ckpt["best_val_acc"],
                   best_epoch=ckpt["best_epoch"], train_time_s=ckpt["train_time_s"],
                   fit_time_s=ckpt.get("fit_time_s", ckpt["train_time_s"]),
                   history=list(ckpt["metrics"]))  # fmt: skip


@dataclass
class _Run:
    """Everything ``prepare`` builds and ``fit`` / ``test`` / ``summarise`` use."""

    config: RunConfig
    rundir: RunDir
    device: torch.device
    dist_info: DistInfo
    data: _Data
    model: nn.Module  # the plain module that trains
    step_model: nn.Module  # what the step calls (DDP / compiled wrapper of ``model``)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: ModelEMA | None
    init: ScratchInit | TransferInit
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    loss_fn: nn.Module
    spec: dict[str, Any]
    params: int
    macs: int
    input_size: tuple[int, ...]
    state: TrainState
    calibration: dict[str, Any] | None
    amp_probe: dict[str, Any] | None  # --amp fastest: the step timings that chose the precision
    distill: dict[str, Any] | None  # --teacher: where the soft targets came from, their cost
    progress: bool

    @property
    def main(self) -> bool:
        return self.dist_info.is_main

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, selected, tested and shipped."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.data.x_train.shape[0] // self.config.batch_size)

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict: ``model`` is always the weights to evaluate (the EMA's when
        there is one); ``train_model`` holds the raw weights a resumed run continues from."""
        data, config = self.data, self.config
        ckpt = {
            "model": self.eval_model.state_dict(), "model_spec": self.spec,
            "config": config.model_dump(mode="json"),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state()}, **self.state.to_checkpoint(),
            "classes": data.classes, "mean": list(data.mean), "std": list(data.std),
            "input_size": list(self.input_size), "dataset": config.dataset,
            "weights": "ema" if self.ema is not None else "raw", "budget": self.calibration,
            "amp_probe": self.amp_probe, "distill": self.distill,
        }  # fmt: skip
        if self.ema is not None:
            ckpt["train_model"] = self.model.state_dict()
            ckpt["ema_updates"] = self.ema.updates
        return ckpt

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt.get("train_model", ckpt["model"]))
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt["model"])
            self.ema.updates = int(ckpt.get("ema_updates", 0))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = TrainState.from_checkpoint(ckpt)
        self.calibration = ckpt.get("budget", self.calibration)


# --- the entry point -------------------------------------------------------------------------


def train(
    config: RunConfig,
    *,
    runs_dir: str | Path = "runs",
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train one run and return its summary (also written to ``<run>/summary.json``).

    Raises RunExistsError if the run directory exists and ``resume`` is False. With
    ``resume``, a complete run returns its summary untouched and an interrupted one
    continues from ``last.pt``. ``on_epoch_end(row)`` sees each epoch's metrics after they
    are logged and checkpointed (a hyper-parameter search prunes from there by raising).
    Under ``torchrun`` the run is data-parallel (see ``cnnbench.train.distributed``).
    """
    device = resolve_device(config.device)
    dist_info = init_from_env(device.type)
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
    if dist_info.enabled and config.budget_minutes is not None:
        raise ConfigError("--budget-minutes is not supported under torchrun: give --epochs")
    if dist_info.enabled and config.amp == "fastest":
        raise ConfigError("--amp fastest is not supported under torchrun (each rank would time "
                          "its own steps): give --amp off or bf16")  # fmt: skip
    try:
        rundir = RunDir(Path(runs_dir) / config.run_name())
        with rundir.lock() if dist_info.is_main else nullcontext():  # one trainer per run
            config, ckpt = _open(config, rundir, resume)
            if config is None:  # already complete
                return rundir.summary() or {}
            run = _prepare(config, rundir, ckpt, device, dist_info, progress and dist_info.is_main)
            _fit(run, on_epoch_end)
            test = _test(run)
            return _summarise(run, test, command)
    finally:
        cleanup(dist_info)


def _open(
    config: RunConfig, rundir: RunDir, resume: bool
) -> tuple[RunConfig | None, dict[str, Any] | None]:
    """Check the run directory: (config, checkpoint to resume from), or (None, None) if the
    run is already complete. A budget run resumes with the epochs its budget resolved to."""
    if not rundir.exists():
        return config, None
    if not resume:
        raise RunExistsError(
            f"run directory {rundir.path} already exists; pass --resume to continue it "
            "or --name to start a new run"
        )
    old = rundir.config()
    if old is not None:
        resolved = {}
        if config.budget_minutes is not None and old.get("budget_minutes") == config.budget_minutes:
            resolved = {k: old[k] for k in ("epochs", "train_subset", "budget_replans") if k in old}
        if config.amp == "fastest" and old.get("amp") in ("off", "bf16"):
            resolved["amp"] = old["amp"]  # what the first start measured
        if resolved:
            config = RunConfig.model_validate({**config.model_dump(), **resolved})
        _check_same_config(old, config, rundir.path)
    if rundir.is_complete():
        return None, None
    last = rundir.checkpoint_path("last")
    return config, (load_checkpoint(last) if last.is_file() else None)


# --- prepare ---------------------------------------------------------------------------------


def _prepare(
    config: RunConfig,
    rundir: RunDir,
    ckpt: dict[str, Any] | None,
    device: torch.device,
    dist_info: DistInfo,
    progress: bool,
) -> _Run:
    init = init_strategy(config)
    if ckpt is None:
        init.check(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
    torch.manual_seed(config.seed)
    ds = load_dataset(
        config.dataset, data_dir=config.data_dir, download=config.download,
        image_size=config.image_size, label_kind=config.label_kind, show_progress=progress,
    )  # fmt: skip
    data = _Data(ds, config, device, dist_info)
    input_size = tuple(ds.x_train.shape[1:])

    model, spec, params, macs = _build_model(config, ckpt, init, data, device, input_size)
    loss_fn = _loss_fn(config)
    teacher = _attach_teacher(config, data, rundir, device)

    amp_probe = ckpt.get("amp_probe") if ckpt is not None else None
    if config.amp == "fastest":
        config, amp_probe = _resolve_amp(config, model, data, init, loss_fn, device)
    calibration = None
    if config.budget_minutes is not None and ckpt is None:
        spent_s = teacher[1]["seconds"] if teacher is not None else 0.0
        config, calibration = _resolve_budget(config, model, data, init, loss_fn, device, spent_s)
        if calibration["train_subset"] is not None:  # the budget cut the training split
            full, data = data, _Data(ds, config, device, dist_info)
            teacher = _subset_teacher(config, teacher, full, data, rundir, device)
    barrier(dist_info)  # every rank has looked at the folder before rank 0 writes to it
    if dist_info.is_main:
        rundir.path.mkdir(parents=True, exist_ok=True)
        dump_config(config, rundir.config_path)
        if teacher is not None and not teacher[1]["cached"]:
            distill.save_teacher_logits(rundir.path / distill.TEACHER_FILE, *teacher)

    optimizer = build_optimizer(init.optimizer_params(model, config), config)
    steps = -(-data.x_train.shape[0] // config.batch_size)
    scheduler = build_scheduler(optimizer, config, steps)
    ema = ModelEMA(model, config.ema_decay) if config.ema_decay else None
    amp_dtype = amp_dtype_for(config.amp, device)
    run = _Run(
        config=config, rundir=rundir, device=device, dist_info=dist_info, data=data,
        model=model, step_model=_wrap(model, config, dist_info, device), optimizer=optimizer,
        scheduler=scheduler, ema=ema, init=init, amp_dtype=amp_dtype,
        scaler=torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None,
        loss_fn=loss_fn, spec=spec, params=params, macs=macs, input_size=input_size,
        state=TrainState(), calibration=calibration, amp_probe=amp_probe, progress=progress,
        distill=_distill_facts(config, teacher),
    )  # fmt: skip
    if ckpt is not None:
        run.restore(ckpt)
    # metrics.jsonl is rewritten from the checkpoint: lines of an epoch that was cut short
    # before its checkpoint landed must not appear twice.
    if run.main:
        text = "".join(json.dumps(m) + "\n" for m in run.state.history)
        write_text_atomic(rundir.metrics_path, text)
    return run


def _loss_fn(config: RunConfig) -> nn.Module:
    if config.teacher is None:
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return distill.DistillLoss(config.distill_alpha, config.distill_temperature,
                               label_smoothing=config.label_smoothing)  # fmt: skip


def _attach_teacher(
    config: RunConfig, data: _Data, rundir: RunDir, device: torch.device
) -> tuple[torch.Tensor, dict[str, Any]] | None:
    """``--teacher``: its logits on the training split (computed, or read from the run
    folder on a resume), tempered into ``data.teacher_logp``; (logits, facts) or None."""
    if config.teacher is None:
        return None
    logits, facts = distill.teacher_logits(
        config.teacher, data, rundir.path / distill.TEACHER_FILE, device
    )
    data.teacher_logp = distill.tempered_log_probs(logits, config.distill_temperature).to(device)
    return logits, facts


def _subset_teacher(
    config: RunConfig,
    teacher: tuple[torch.Tensor, dict[str, Any]] | None,
    full: _Data,
    data: _Data,
    rundir: RunDir,
    device: torch.device,
) -> tuple[torch.Tensor, dict[str, Any]] | None:
    """The teacher's targets for the subset a budget cut ``full``'s training split down to:
    its rows of the logits already computed (the teacher is not run a second time)."""
    if teacher is None:
        return None
    n = int(max(full.train_idx.max(), data.train_idx.max())) + 1
    row_of = torch.full((n,), -1, dtype=torch.long)  # dataset image -> row of the logits
    row_of[full.train_idx] = torch.arange(len(full.train_idx))
    rows = row_of[data.train_idx]
    if bool((rows < 0).any()):  # not a subset of the images the teacher saw: run it again
        return _attach_teacher(config, data, rundir, device)
    logits = teacher[0][rows.to(teacher[0].device)]
    facts = distill.subset_facts(teacher[1], logits, data)
    data.teacher_logp = distill.tempered_log_probs(logits, config.distill_temperature).to(device)
    return logits, facts


def _distill_facts(
    config: RunConfig, teacher: tuple[torch.Tensor, dict[str, Any]] | None
) -> dict[str, Any] | None:
    if teacher is None:
        return None
    return {**teacher[1], "alpha": config.distill_alpha, "temperature": config.distill_temperature}


def _build_model(
    config: RunConfig,
    ckpt: dict[str, Any] | None,
    init: ScratchInit | TransferInit,
    data: _Data,
    device: torch.device,
    input_size: tuple[int, ...],
) -> tuple[nn.Module, dict[str, Any], int, int]:
    """(model on the device, its spec, parameters, MACs). The checkpoint holds every weight,
    so a resumed transfer child needs no parent."""
    if ckpt is not None:
        model = create_model(**ckpt["model_spec"])
    else:
        model = init.build(config, len(data.classes), data)
    model = model.to(device)
    apply_bn_options(model, config, fresh=ckpt is None)
    spec = dict(model.cnnbench_spec)
    params, macs = count_params(model), count_macs(model, input_size)
    if data.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, spec, params, macs


def _wrap(
    model: nn.Module, config: RunConfig, dist_info: DistInfo, device: torch.device
) -> nn.Module:
    """The module the training step calls: DDP and / or compiled around ``model``."""
    step_model = model
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist_info.local_rank] if device.type == "cuda" else None
        # DDP registers only the parameters that require grad when it wraps the model; a
        # gradual transfer unfreezes more later, so it wraps everything and lets DDP skip
        # the unused ones.
        gradual = config.transfer is not None and config.transfer.policy == "gradual"
        if gradual:
            for p in model.parameters():
                p.requires_grad_(True)
        step_model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=gradual)
    if config.compile:
        step_model = torch.compile(step_model)
    return step_model


def _resolve_amp(
    config: RunConfig,
    model: nn.Module,
    data: _Data,
    init: ScratchInit | TransferInit,
    loss_fn: nn.Module,
    device: torch.device,
) -> tuple[RunConfig, dict[str, Any]]:
    """``--amp fastest``: time real steps in float32 and bf16, keep the faster (``precision``)."""
    gen = torch.Generator().manual_seed(config.seed + 98)
    time_step = precision.time_precision(
        model, lambda m: build_optimizer(init.optimizer_params(m, config), config),
        budget.endless_batches(lambda: data.train_batches(gen)), loss_fn,
        ema_decay=config.ema_decay, device_type=device.type,
        sync=torch.cuda.synchronize if device.type == "cuda" else (lambda: None),
    )  # fmt: skip
    # the probe draws no random number the run would otherwise draw: a rerun from config.yaml
    # (amp already chosen, no probe) trains identically
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        chosen, probe = precision.fastest_amp(device, time_step)
    return RunConfig.model_validate({**config.model_dump(), "amp": chosen}), probe


def _resolve_budget(
    config: RunConfig,
    model: nn.Module,
    data: _Data,
    init: ScratchInit | TransferInit,
    loss_fn: nn.Module,
    device: torch.device,
    spent_s: float = 0.0,
) -> tuple[RunConfig, dict[str, Any]]:
    """Time real steps on this machine, then fix ``epochs`` to what the budget allows.
    ``spent_s``: seconds of the budget already spent before the first epoch (a teacher's
    targets)."""
    assert config.budget_minutes is not None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(config.seed + 99)

    # A gradual transfer child's steps get dearer as groups unfreeze (its head-only first
    # epoch is several times cheaper than its last): each state the budget reaches is timed
    # (timed frozen only, a 2-minute budget ran 4.6 minutes; timed fully unfrozen only, it used
    # 86 s of 120). Every epoch sets its own state again, so the model is left as it was.
    steady_from, state_of = init.budget_states(model, config)
    step_by_state: dict[Any, float] = {}

    def step_s(epoch: int) -> float:
        state = state_of(epoch)
        if state not in step_by_state:
            init.on_epoch_start(model, config, epoch)
            step_by_state[state] = budget.time_steps(
                model, lambda m: build_optimizer(init.optimizer_params(m, config), config),
                budget.endless_batches(lambda: data.train_batches(gen)), loss_fn,
                ema_decay=config.ema_decay, sync=sync,
                amp_dtype=amp_dtype_for(config.amp, device), device_type=device.type,
            )  # fmt: skip
        return step_by_state[state]

    n_val = data.x_val.shape[0]
    eval_s = 0.0
    if n_val:
        xb, _ = next(iter(data.eval_batches(data.x_val[: config.eval_batch_size],
                                            data.y_val[: config.eval_batch_size])))  # fmt: skip
        eval_s = budget.time_eval(model, xb, sync=sync) * math.ceil(n_val / config.eval_batch_size)
    n_train = data.x_train.shape[0]
    budget_s = config.budget_minutes * 60 - spent_s
    if budget_s <= 0:
        raise ConfigError(
            f"the teacher's targets took {spent_s:.0f} s, the whole {config.budget_minutes:g}-"
            "minute budget; give a larger budget"
        )
    epochs, subset = budget.plan_budget(budget_s, step_s, eval_s, n_train, config.batch_size,
                                        steady_from=steady_from)  # fmt: skip
    epoch_s = -(-n_train // config.batch_size) * step_s(1) + eval_s
    updates: dict[str, Any] = {"epochs": epochs}
    if subset is not None:  # the budget fits fewer images per epoch than the split has
        updates["train_subset"] = subset
    if config.warmup_epochs and config.warmup_epochs >= epochs:
        raise ConfigError(
            f"a {config.budget_minutes:g}-minute budget fits {epochs} epoch(s) on this machine, "
            f"not more than warmup_epochs ({config.warmup_epochs}); give a larger budget"
        )
    resolved = RunConfig.model_validate({**config.model_dump(), **updates})
    info = {"budget_s": budget_s, "spent_before_s": round(spent_s, 2), "step_s": step_s(1), "eval_s": eval_s, "steady_from": steady_from,
            "step_s_by_state": {str(k): v for k, v in step_by_state.items()},
            "epoch_s_estimate": epoch_s, "epochs": epochs,
            "train_subset": updates.get("train_subset"),
            "calibration_s": time.perf_counter() - t0}  # fmt: skip
    return resolved, info


# --- fit -------------------------------------------------------------------------------------


def _fit(run: _Run, on_epoch_end: Callable[[dict[str, Any]], None] | None) -> None:
    epoch = run.state.epoch
    while epoch < run.config.epochs:  # a budget run may re-plan its epochs as it goes
        epoch += 1
        t0 = time.perf_counter()
        row = _train_epoch(run, epoch)
        _log_epoch(run, row)
        run.state.fit_time_s += time.perf_counter() - t0  # checkpoint time follows
        _replan(run)
        _checkpoint_epoch(run, epoch, row)
        if on_epoch_end is not None:
            on_epoch_end(row)


def _replan(run: _Run) -> None:
    """Re-plan a budget run's epochs when its real epochs would miss the budget; the new plan
    is in config.yaml before the checkpoint that follows, so a resumed run keeps it."""
    steps = run.steps_per_epoch
    out = budget.replanned(run.config, run.calibration, run.state.history,
                           run.state.fit_time_s, steps)  # fmt: skip
    if out is None:
        return
    old, (run.config, epoch_s) = run.config, out
    lrs = [g["lr"] for g in run.optimizer.param_groups]  # a new scheduler resets them
    scheduler = build_scheduler(run.optimizer, run.config, steps)
    scheduler.load_state_dict(run.scheduler.state_dict())  # the same step, the new plan
    for group, lr in zip(run.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr  # the plans agree up to here: the next step's rate is unchanged
    run.scheduler = scheduler
    if run.main:
        dump_config(run.config, run.rundir.config_path)
    if run.progress:
        progress_write(
            f"{run.config.run_name()}: epochs take {epoch_s:.1f} s, not the "
            f"{run.calibration['epoch_s_estimate']:.1f} s timed; re-planned the "
            f"{old.budget_minutes:g}-minute budget from {old.epochs} to {run.config.epochs} epochs",
            file=sys.stderr,
        )


def _train_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    config, data = run.config, run.data
    seed = config.seed * 1_000_003 + epoch
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    run.init.on_epoch_start(run.model, config, epoch)
    apply_bn_options(run.model, config, fresh=False)  # a policy may have unfrozen BN scales
    lr = run.optimizer.param_groups[0]["lr"]
    bar = progress_bar(
        total=run.steps_per_epoch, desc=f"{config.run_name()} {epoch}/{config.epochs}",
        unit="batch", leave=False, disable=not run.progress, file=sys.stderr,
    )  # fmt: skip
    ema = run.ema

    def on_step() -> None:
        if ema is not None:
            ema.update()
        bar.update()

    t0 = time.perf_counter()
    stats = train_one_epoch(
        run.step_model, data.train_batches(gen, epoch), run.optimizer, run.scheduler,
        run.loss_fn, device=run.device, amp_dtype=run.amp_dtype, scaler=run.scaler,
        on_step=on_step,
    )  # fmt: skip
    epoch_time = time.perf_counter() - t0
    bar.close()
    run.state.train_time_s += epoch_time
    if run.dist_info.enabled:
        loss_sum, correct, seen = all_reduce_sum(
            [stats["loss_sum"], stats["correct"], stats["samples"]], run.device, run.dist_info
        )
        stats = {"train_loss": loss_sum / seen, "train_acc": correct / seen}
    t0 = time.perf_counter()
    val = evaluate(run.eval_model, data.eval_batches(data.x_val, data.y_val), device=run.device,
                   amp_dtype=eval_amp_dtype(run.amp_dtype, run.device))  # fmt: skip
    return {
        "epoch": epoch, "train_loss": stats["train_loss"], "train_acc": stats["train_acc"],
        "val_loss": val["loss"], "val_acc": val["acc"], "lr": lr,
        "epoch_time_s": round(epoch_time, 3),
        "val_time_s": round(time.perf_counter() - t0, 3),
        "images_per_s": round(data.x_train.shape[0] / epoch_time, 1),
        "load_avg": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }  # fmt: skip


def _log_epoch(run: _Run, row: dict[str, Any]) -> None:
    run.state.history.append(row)
    if run.main:
        with open(run.rundir.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
    if run.progress:
        weights = " (EMA)" if run.ema is not None else ""
        progress_write(
            f"{run.config.run_name()} epoch {row['epoch']}/{run.config.epochs}: loss "
            f"{row['train_loss']:.4f} acc {row['train_acc']:.4f} | val{weights} loss "
            f"{row['val_loss']:.4f} acc {row['val_acc']:.4f} | {row['images_per_s']:.0f} img/s",
            file=sys.stderr,
        )


def _checkpoint_epoch(run: _Run, epoch: int, row: dict[str, Any]) -> None:
    state = run.state
    state.epoch = epoch
    # Without a validation split the last epoch is the one we keep.
    score = row["val_acc"] if run.data.x_val.shape[0] else float(epoch)
    if score > state.best_val:
        state.best_val, state.best_epoch = score, epoch
        if run.main:
            save_checkpoint(run.checkpoint(), run.rundir.checkpoint_path("best"))
    if run.main and (epoch % run.config.checkpoint_every == 0 or epoch == run.config.epochs):
        save_checkpoint(run.checkpoint(), run.rundir.checkpoint_path("last"))


# --- test ------------------------------------------------------------------------------------


def _test(run: _Run) -> dict[str, Any]:
    """The test split, once, with the checkpoint chosen on validation: plain and with TTA."""
    barrier(run.dist_info)  # best.pt is on disk
    best = load_checkpoint(run.rundir.checkpoint_path("best"), map_location=run.device)
    model = run.eval_model
    unwrap(model).load_state_dict(best["model"])
    data = run.data
    batches = data.eval_batches(data.x_test.to(run.device), data.y_test.to(run.device))
    amp_dtype = eval_amp_dtype(run.amp_dtype, run.device)
    t0 = time.perf_counter()
    plain = evaluate(model, batches, device=run.device, amp_dtype=amp_dtype)
    out = {"test_acc": plain["acc"], "test_loss": plain["loss"],
           "test_time_s": round(time.perf_counter() - t0, 3),
           "test_pred_counts": plain["pred_counts"]}  # fmt: skip
    if run.config.tta != "off":
        t0 = time.perf_counter()
        tta = evaluate(model, batches, device=run.device, amp_dtype=amp_dtype,
                       tta=run.config.tta)  # fmt: skip
        out |= {"test_acc_tta": tta["acc"], "test_loss_tta": tta["loss"],
                "test_time_tta_s": round(time.perf_counter() - t0, 3)}  # fmt: skip
    return out


def _mean(values: list[float | None]) -> float | None:
    """Mean of the values that are there (None if none is): the machine's load per epoch."""
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 2) if present else None


def standard_error(acc: float, n: int) -> float | None:
    """Binomial standard error of an accuracy measured on ``n`` images."""
    if n <= 0 or acc != acc:  # NaN
        return None
    return math.sqrt(max(acc * (1 - acc), 0.0) / n)


# --- summarise -------------------------------------------------------------------------------


def _summarise(run: _Run, test: dict[str, Any], command: str | None) -> dict[str, Any]:
    config, data, state, history = run.config, run.data, run.state, run.state.history
    env = environment(run.device)
    n_test = int(data.x_test.shape[0])
    has_val = bool(data.x_val.shape[0])
    summary = {
        "name": config.run_name(), "status": "complete", "model": config.model,
        "model_args": config.model_args, "dataset": config.dataset, "recipe": config.recipe,
        "optimizer": config.optimizer, "lr": config.lr, "lr_effective": config.effective_lr,
        "schedule": config.schedule, "epochs": config.epochs, "batch_size": config.batch_size,
        "seed": config.seed, "train_images": int(data.x_train.shape[0]),
        "val_images": int(data.x_val.shape[0]), "test_images": n_test,
        "best_val_acc": state.best_val if has_val else None, "best_epoch": state.best_epoch,
        "final_val_acc": history[-1]["val_acc"] if history else None,
        **test, "test_acc_se": standard_error(test["test_acc"], n_test),
        "tta": config.tta, "tta_views": len(TTA_VIEWS[config.tta]),
        "weights": "ema" if run.ema is not None else "raw", "ema_decay": config.ema_decay,
        "train_precision": str(run.amp_dtype or torch.float32).removeprefix("torch."),
        "amp_probe": run.amp_probe,
        "params": run.params, "macs": run.macs, "input_size": list(run.input_size),
        "train_time_s": round(state.train_time_s, 2),
        "fit_time_s": round(state.fit_time_s, 2),
        "budget_minutes": config.budget_minutes, "budget": run.calibration,
        "budget_replans": [r.model_dump() for r in config.budget_replans],
        "images_per_s": round(sum(h["images_per_s"] for h in history) / max(1, len(history)), 1),
        "load_average": _mean([h.get("load_avg") for h in history]),
        "device": env["device_name"], "threads": env["threads"], "versions": env["versions"],
        "git_commit": env["git_commit"],
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "transfer": config.transfer.model_dump(mode="json") if config.transfer else None,
        "distill": run.distill,
        "world_size": run.dist_info.world_size,
    }  # fmt: skip
    if "test_acc_tta" in test:
        summary["test_acc_tta_se"] = standard_error(test["test_acc_tta"], n_test)
    summary["did_not_learn"] = did_not_learn(summary, len(data.classes))
    if run.main:
        write_json_atomic(run.rundir.summary_path, summary)
    return summary
