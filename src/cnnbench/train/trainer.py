"""One training run, end to end: data, model, epochs, checkpoints, the final test.

``train(config)`` owns the run directory (see docs/ARCHITECTURE.md): it refuses to overwrite
one, resumes one exactly from ``last.pt``, logs one line per epoch to ``metrics.jsonl``, keeps
``best.pt`` on validation accuracy, and touches the test set once, at the end, with the best
checkpoint.

Exact resume: every epoch draws its shuffling and augmentation from a generator seeded by
(seed, epoch), and reseeds the global RNG (dropout) the same way, so an epoch's result does
not depend on whether the process was restarted before it.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from cnnbench.data import BatchIterator, ImageDataset, load_dataset, train_val_split
from cnnbench.data.augment import Augment
from cnnbench.env import environment
from cnnbench.fileio import write_json_atomic
from cnnbench.models import create_model
from cnnbench.profile import count_macs, count_params
from cnnbench.train.checkpoint import load_checkpoint, save_checkpoint, unwrap
from cnnbench.train.config import ConfigError, RunConfig, dump_config
from cnnbench.train.distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_from_env
from cnnbench.train.loop import evaluate, train_one_epoch
from cnnbench.train.optim import build_optimizer, build_scheduler

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"

# Settings that may differ between an interrupted run and its resumption without changing
# any number the run produces.
_RESUMABLE_CHANGES = {"threads", "eval_batch_size", "checkpoint_every", "name", "data_dir"}


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


def amp_dtype_for(config: RunConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; full float32 on the CPU (bf16 there is slower)."""
    choice = config.amp
    if choice == "auto":
        choice = "bf16" if device.type == "cuda" else "off"
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's summary.json, or None if the run has not finished."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(run_dir: str | Path) -> bool:
    """A run is complete once its summary says so (written last, atomically)."""
    summary = read_summary(run_dir)
    return bool(summary) and summary.get("status") == "complete"


def _check_same_config(old: dict[str, Any], new: RunConfig, run_dir: Path) -> None:
    new_d = new.model_dump(mode="json")
    diffs = [
        f"{k}: {old.get(k)!r} -> {new_d.get(k)!r}"
        for k in sorted(set(old) | set(new_d))
        if k not in _RESUMABLE_CHANGES and old.get(k) != new_d.get(k)
    ]
    if diffs:
        raise ConfigError(
            f"cannot resume {run_dir}: it was started with other settings ({'; '.join(diffs)}); "
            "use a new --name instead"
        )


class _Data:
    """The run's splits as uint8 tensors on the training device, plus how to batch them."""

    def __init__(
        self, ds: ImageDataset, config: RunConfig, device: torch.device, dist_info: DistInfo
    ):
        self.classes = list(ds.classes)
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
        self.x_train, self.y_train = (
            ds.x_train[train_idx].to(device),
            ds.y_train[train_idx].to(device),
        )
        self.x_val, self.y_val = ds.x_train[val_idx].to(device), ds.y_train[val_idx].to(device)
        # The test split stays on the CPU until the very end: it is used once.
        self.x_test, self.y_test = ds.x_test[test_idx], ds.y_test[test_idx]
        self.device = device
        # channels_last is faster on both CUDA and the CPU (oneDNN): measured 1.25-1.8x per
        # training step on this project's 2-core CPU (benchmarks/RESULTS.md).
        self.channels_last = config.channels_last != "off"
        self.augment = Augment(crop_padding=config.crop_padding) if config.augment else None
        self.batch_size, self.eval_batch_size = config.batch_size, config.eval_batch_size
        self.shard = dist_info.shard

    def train_batches(self, generator: torch.Generator) -> BatchIterator:
        return BatchIterator(
            self.x_train, self.y_train, self.batch_size, shuffle=True, augment=self.augment,
            mean=self.mean, std=self.std, generator=generator, drop_last=False,
            device=self.device, channels_last=self.channels_last, shard=self.shard,
        )  # fmt: skip

    def eval_batches(self, x: torch.Tensor, y: torch.Tensor) -> BatchIterator:
        return BatchIterator(
            x, y, self.eval_batch_size, shuffle=False, augment=None, mean=self.mean,
            std=self.std, device=self.device, channels_last=self.channels_last,
        )  # fmt: skip


def build_model(
    config: RunConfig, num_classes: int, ckpt: dict[str, Any] | None = None
) -> nn.Module:
    """The run's model: from the run's own checkpoint when resuming (which holds every weight,
    so a transfer child resumes even if its parent moved), else fresh or a transfer child."""
    if ckpt is not None:
        return create_model(**ckpt["model_spec"])
    if config.transfer is not None:
        from cnnbench.train.transfer import build_child

        return build_child(config, num_classes)
    return create_model(config.model, num_classes=num_classes, **config.model_args)


def _optimizer_groups(model: nn.Module, config: RunConfig) -> nn.Module | list[dict]:
    if config.transfer is not None:
        from cnnbench.train.transfer import optimizer_groups

        return optimizer_groups(model, config)
    return model


def _on_epoch_start(model: nn.Module, config: RunConfig, epoch: int) -> None:
    if config.transfer is not None:
        from cnnbench.train.transfer import on_epoch_start

        on_epoch_start(model, config, epoch)


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
    try:
        return _train(config, Path(runs_dir), resume, progress and dist_info.is_main, command,
                      on_epoch_end, device, dist_info)  # fmt: skip
    finally:
        cleanup(dist_info)


def _train(
    config: RunConfig,
    runs_dir: Path,
    resume: bool,
    progress: bool,
    command: str | None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None,
    device: torch.device,
    dist_info: DistInfo,
) -> dict[str, Any]:
    main = dist_info.is_main
    run_dir = runs_dir / config.run_name()
    ckpt: dict[str, Any] | None = None
    if run_dir.exists() and any(run_dir.iterdir()):
        if not resume:
            raise RunExistsError(
                f"run directory {run_dir} already exists; pass --resume to continue it "
                "or --name to start a new run"
            )
        old_cfg_path = run_dir / CONFIG
        if old_cfg_path.is_file():
            import yaml

            _check_same_config(yaml.safe_load(old_cfg_path.read_text()) or {}, config, run_dir)
        if is_complete(run_dir):
            return read_summary(run_dir) or {}
        if (run_dir / "last.pt").is_file():
            ckpt = load_checkpoint(run_dir / "last.pt")
    if config.transfer is not None and ckpt is None:
        from cnnbench.train.transfer import check_transfer

        check_transfer(config)  # a bad parent must not leave a half-made run directory
    barrier(dist_info)  # every rank has looked at the folder before rank 0 writes to it
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(config, run_dir / CONFIG)

    if config.threads:
        torch.set_num_threads(config.threads)
    amp_dtype = amp_dtype_for(config, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
    torch.manual_seed(config.seed)

    ds = load_dataset(
        config.dataset, data_dir=config.data_dir, download=config.download,
        image_size=config.image_size, label_kind=config.label_kind, show_progress=progress,
    )  # fmt: skip
    data = _Data(ds, config, device, dist_info)
    input_size = tuple(ds.x_train.shape[1:])

    model = build_model(config, len(data.classes), ckpt).to(device)
    spec = dict(model.cnnbench_spec)
    params, macs = count_params(model), count_macs(model, input_size)
    if data.channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = -(-data.x_train.shape[0] // config.batch_size)
    optimizer = build_optimizer(_optimizer_groups(model, config), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    history: list[dict[str, Any]] = []
    best_val, best_epoch, start_epoch, train_time = -1.0, 0, 1, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history = list(ckpt["metrics"])
        best_val, best_epoch = ckpt["best_val_acc"], ckpt["best_epoch"]
        start_epoch, train_time = ckpt["epoch"] + 1, ckpt["train_time_s"]
    # metrics.jsonl is rewritten from the checkpoint: lines of an epoch that was cut short
    # before its checkpoint landed must not appear twice.
    if main:
        (run_dir / METRICS).write_text("".join(json.dumps(m) + "\n" for m in history))

    plain = unwrap(model)
    step_model: nn.Module = model
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

    def state(epoch: int) -> dict[str, Any]:
        return {
            "model": plain.state_dict(), "model_spec": spec,
            "config": config.model_dump(mode="json"), "epoch": epoch,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state()}, "best_val_acc": best_val,
            "best_epoch": best_epoch, "train_time_s": train_time, "metrics": history,
            "classes": data.classes, "mean": list(data.mean), "std": list(data.std),
            "input_size": list(input_size), "dataset": config.dataset,
        }  # fmt: skip

    name = config.run_name()
    for epoch in range(start_epoch, config.epochs + 1):
        torch.manual_seed(config.seed * 1_000_003 + epoch)
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        _on_epoch_start(plain, config, epoch)
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(
            total=steps_per_epoch, desc=f"{name} {epoch}/{config.epochs}", unit="batch",
            leave=False, disable=not progress, file=sys.stderr,
        )  # fmt: skip
        t0 = time.perf_counter()
        stats = train_one_epoch(
            step_model, data.train_batches(gen), optimizer, scheduler, loss_fn, device=device,
            amp_dtype=amp_dtype, scaler=scaler, on_step=bar.update,
        )  # fmt: skip
        epoch_time = time.perf_counter() - t0
        bar.close()
        train_time += epoch_time
        if dist_info.enabled:
            loss_sum, correct, seen = all_reduce_sum(
                [stats["loss_sum"], stats["correct"], stats["samples"]], device, dist_info
            )
            stats = {"train_loss": loss_sum / seen, "train_acc": correct / seen}
        stats = {"train_loss": stats["train_loss"], "train_acc": stats["train_acc"]}
        val = evaluate(plain, data.eval_batches(data.x_val, data.y_val), device=device,
                       amp_dtype=amp_dtype)  # fmt: skip
        row = {
            "epoch": epoch, **stats, "val_loss": val["loss"], "val_acc": val["acc"], "lr": lr,
            "epoch_time_s": round(epoch_time, 3),
            "images_per_s": round(data.x_train.shape[0] / epoch_time, 1),
        }  # fmt: skip
        history.append(row)
        if main:
            with open(run_dir / METRICS, "a") as f:
                f.write(json.dumps(row) + "\n")
        if progress:
            tqdm.write(
                f"{name} epoch {epoch}/{config.epochs}: loss {stats['train_loss']:.4f} "
                f"acc {stats['train_acc']:.4f} | val loss {val['loss']:.4f} acc {val['acc']:.4f}"
                f" | {row['images_per_s']:.0f} img/s",
                file=sys.stderr,
            )
        # Without a validation split the last epoch is the one we keep.
        score = val["acc"] if data.x_val.shape[0] else float(epoch)
        if score > best_val:
            best_val, best_epoch = score, epoch
            if main:
                save_checkpoint(state(epoch), run_dir / "best.pt")
        if main and (epoch % config.checkpoint_every == 0 or epoch == config.epochs):
            save_checkpoint(state(epoch), run_dir / "last.pt")
        if on_epoch_end is not None:
            on_epoch_end(row)

    # The test set, once, with the checkpoint chosen on validation.
    barrier(dist_info)  # best.pt is on disk
    best = load_checkpoint(run_dir / "best.pt", map_location=device)
    plain.load_state_dict(best["model"])
    test = evaluate(plain, data.eval_batches(data.x_test.to(device), data.y_test.to(device)),
                    device=device, amp_dtype=amp_dtype)  # fmt: skip
    env = environment(device)
    summary = {
        "name": name, "status": "complete", "model": config.model,
        "model_args": config.model_args, "dataset": config.dataset,
        "optimizer": config.optimizer, "lr": config.lr, "schedule": config.schedule,
        "epochs": config.epochs, "batch_size": config.batch_size, "seed": config.seed,
        "train_images": int(data.x_train.shape[0]), "val_images": int(data.x_val.shape[0]),
        "test_images": int(data.x_test.shape[0]),
        "best_val_acc": best_val if data.x_val.shape[0] else None, "best_epoch": best_epoch,
        "final_val_acc": history[-1]["val_acc"] if history else None,
        "test_acc": test["acc"], "test_loss": test["loss"], "params": params, "macs": macs,
        "input_size": list(input_size), "train_time_s": round(train_time, 2),
        "images_per_s": round(sum(h["images_per_s"] for h in history) / max(1, len(history)), 1),
        "device": env["device_name"], "threads": env["threads"], "versions": env["versions"],
        "git_commit": env["git_commit"],
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "transfer": config.transfer.model_dump(mode="json") if config.transfer else None,
        "world_size": dist_info.world_size,
    }  # fmt: skip
    if main:
        write_json_atomic(run_dir / SUMMARY, summary)
    return summary
