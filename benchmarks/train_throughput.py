"""Training throughput: cnnbench's loop against the common torchvision + DataLoader loop.

Both loops train the same model (same initial weights), with the same batch size, optimizer
(SGD, momentum 0.9, weight decay 5e-4), loss, augmentation (random crop with 4 px padding,
horizontal flip) and machine, in one process. A step is forward, backward, optimizer step and
the augmentation/normalisation of its batch; images/s counts timed steps only.

- cnnbench: the trainer's own components: the uint8 dataset as one tensor on the device,
  ``BatchIterator`` + ``Augment`` (batched, no per-image Python), ``build_optimizer``,
  ``build_scheduler`` (per-step LambdaLR) and ``train_one_epoch`` (no host sync per batch).
- reference: written the common way (kuangliu/pytorch-cifar, the PyTorch CIFAR tutorial): a
  CIFAR10-style Dataset of PIL images (``Image.fromarray`` + transforms per image, exactly as
  ``torchvision.datasets.CIFAR10.__getitem__``), ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, a ``DataLoader``, an eager float32
  model and ``loss.item()`` / ``correct.item()`` per batch.

Timing: per model and repeat, each loop builds its model, runs ``--warmup`` steps (this also
starts DataLoader workers), then ``--steps`` timed steps ending in a device sync. The loops are
interleaved (cnnbench, reference, cnnbench, reference, ...) so that a machine shared with other
work slows both alike; medians over ``--repeats`` and the ratio of medians are reported.

``--decompose`` also times the parts alone: each data pipeline with no model (img/s), the model
step on one fixed batch (float32 vs channels_last, optional bf16 autocast), and the optimizer
step alone (torch default vs foreach vs fused).

CPU:  CNNBENCH_DATA=/work/shared/data python benchmarks/train_throughput.py --threads 1
GPU:  python benchmarks/train_throughput.py --device cuda --models mobilenetv2 resnet34 \
        --steps 100 --warmup 20 --ref-workers 8
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cnnbench.data import Augment, BatchIterator, ImageDataset, load_dataset
from cnnbench.env import cpu_name
from cnnbench.env import environment as cnnbench_environment
from cnnbench.fileio import write_text_atomic
from cnnbench.models import create_model
from cnnbench.train.config import RunConfig
from cnnbench.train.loop import train_one_epoch
from cnnbench.train.optim import build_optimizer, build_scheduler

MODELS = ["lenet5", "mobilenetv2_reduced", "mobilenetv2", "resnet34"]
LR = 0.05  # per 128-image batch; irrelevant to speed, kept sane so losses stay finite
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4


# --------------------------------------------------------------------------- reference loop
class PILCifar(Dataset):
    """What ``torchvision.datasets.CIFAR10`` does, from cnnbench's uint8 arrays.

    torchvision keeps ``data`` as an (N, 32, 32, 3) uint8 numpy array and, per item, builds a
    PIL image with ``Image.fromarray`` and applies ``transform``; so does this class.
    """

    def __init__(self, x_uint8_nchw: torch.Tensor, y: torch.Tensor, transform: Callable) -> None:
        self.data = np.ascontiguousarray(x_uint8_nchw.permute(0, 2, 3, 1).numpy())
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        img, target = self.data[index], self.targets[index]
        img = Image.fromarray(img)
        return self.transform(img), target


def reference_transform(mean: tuple, std: tuple, augment: bool = True) -> Callable:
    from torchvision import transforms as T

    aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    return T.Compose([*aug, T.ToTensor(), T.Normalize(mean, std)])


def reference_loader(
    ds: ImageDataset, batch_size: int, workers: int, seed: int, device: torch.device
) -> DataLoader:
    mean, std = ds.mean_std()
    dataset = PILCifar(ds.x_train, ds.y_train, reference_transform(mean, std))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
    )


def reference_train_steps(
    model: nn.Module,
    batches: Iterator,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device,
    steps: int,
) -> list[float]:
    """The common training loop (pytorch-cifar's ``train``); returns the per-step losses."""
    model.train()
    losses, correct, total = [], 0, 0
    for inputs, targets in itertools.islice(batches, steps):
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = loss_fn(outputs, targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        correct += outputs.argmax(1).eq(targets).sum().item()
        total += targets.size(0)
    return losses


def reference_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


# --------------------------------------------------------------------------- cnnbench loop
def run_config(model: str, args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        model=model,
        batch_size=args.batch_size,
        optimizer="sgd",
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        schedule="cosine",
        epochs=1,
        seed=args.seed,
    )


def cnnbench_batches(
    x: torch.Tensor, y: torch.Tensor, ds: ImageDataset, args: argparse.Namespace
) -> BatchIterator:
    """The trainer's ``_Data.train_batches``, with x, y already on the training device."""
    mean, std = ds.mean_std()
    gen = torch.Generator(device=x.device).manual_seed(args.seed)
    return BatchIterator(
        x,
        y,
        args.batch_size,
        shuffle=True,
        augment=Augment(crop_padding=4),
        mean=mean,
        std=std,
        generator=gen,
        drop_last=True,
        device=x.device,
        channels_last=args.channels_last,
    )


def amp_dtype(args: argparse.Namespace) -> torch.dtype | None:
    return {"off": None, "bf16": torch.bfloat16}[args.amp]


# --------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def new_model(name: str, device: torch.device, channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def time_cnnbench(
    name: str, data: tuple, ds: ImageDataset, args: argparse.Namespace, device: torch.device
) -> float:
    """Images/s of the cnnbench loop: warm-up steps, then ``args.steps`` timed steps."""
    x, y = data
    model = new_model(name, device, args.channels_last)
    step_model = torch.compile(model) if args.compile else model
    config = run_config(name, args)
    optimizer = build_optimizer(model, config)
    if args.optimizer_impl != "default":
        _set_optimizer_impl(optimizer, args.optimizer_impl)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=len(x) // args.batch_size)
    loss_fn = nn.CrossEntropyLoss()
    batches = iter(cnnbench_batches(x, y, ds, args))
    kw = {"device": device, "amp_dtype": amp_dtype(args)}
    train_one_epoch(
        step_model, itertools.islice(batches, args.warmup), optimizer, scheduler, loss_fn, **kw
    )
    sync(device)
    t0 = time.perf_counter()
    # train_one_epoch reads its running sums once at the end (.item()): that is the sync.
    train_one_epoch(
        step_model, itertools.islice(batches, args.steps), optimizer, scheduler, loss_fn, **kw
    )
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def time_reference(
    name: str, ds: ImageDataset, args: argparse.Namespace, device: torch.device
) -> float:
    """Images/s of the common loop: eager, float32, contiguous (NCHW) model."""
    model = new_model(name, device, channels_last=False)
    optimizer = reference_optimizer(model)
    loss_fn = nn.CrossEntropyLoss()
    batches = iter(reference_loader(ds, args.batch_size, args.ref_workers, args.seed, device))
    reference_train_steps(model, batches, optimizer, loss_fn, device, args.warmup)
    sync(device)
    t0 = time.perf_counter()
    reference_train_steps(model, batches, optimizer, loss_fn, device, args.steps)
    sync(device)
    dt = time.perf_counter() - t0
    del batches  # shuts the workers down before the next cnnbench run
    return args.steps * args.batch_size / dt


def _set_optimizer_impl(optimizer: torch.optim.Optimizer, impl: str) -> None:
    """Force the for-loop ("default" leaves torch's choice), foreach or fused SGD kernels."""
    if impl == "default":
        return
    for group in optimizer.param_groups:
        group["foreach"] = impl == "foreach"
        group["fused"] = impl == "fused"
    optimizer.defaults.update(foreach=impl == "foreach", fused=impl == "fused")


# --------------------------------------------------------------------------- decomposition
def time_pipeline(batches: Iterator, n: int, device: torch.device) -> float:
    """Images/s of a data pipeline alone: ``n`` batches, no model."""
    first = next(batches)  # starts workers / draws the epoch
    bs = len(first[1])
    t0 = time.perf_counter()
    for x, _ in itertools.islice(batches, n):
        x.to(device)
    sync(device)
    return n * bs / (time.perf_counter() - t0)


def time_model_step(
    name: str,
    args: argparse.Namespace,
    device: torch.device,
    *,
    channels_last: bool,
    amp: torch.dtype | None,
    steps: int,
) -> float:
    """Images/s of forward + backward + SGD step on one fixed, already normalised batch."""
    model = new_model(name, device, channels_last)
    optimizer = reference_optimizer(model)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(max(1, args.warmup)):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return args.batch_size / statistics.median(times)


def time_optimizer_step(name: str, device: torch.device, impl: str, steps: int) -> float:
    """Milliseconds per SGD step (momentum + weight decay) with gradients already present."""
    model = new_model(name, device, channels_last=False)
    optimizer = reference_optimizer(model)
    _set_optimizer_impl(optimizer, impl)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def decompose(
    name: str, ds: ImageDataset, data: tuple, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    n = max(2, args.steps)
    out: dict[str, Any] = {}
    # Data pipelines: model independent, so only measured for the first model.
    if name == args.models[0]:
        for rep in range(args.repeats):
            out.setdefault("pipeline_cnnbench_img_s", []).append(
                time_pipeline(iter(cnnbench_batches(*data, ds, args)), max(10, n), device)
            )
            for w in sorted({0, args.ref_workers}):
                loader = reference_loader(ds, args.batch_size, w, args.seed + rep, device)
                out.setdefault(f"pipeline_reference_w{w}_img_s", []).append(
                    time_pipeline(iter(loader), max(10, n), device)
                )
    variants = [("fp32", False, None), ("fp32_channels_last", True, None)]
    if args.try_bf16:
        variants.append(("bf16_channels_last", True, torch.bfloat16))
    for _ in range(args.repeats):  # interleaved, like the loops
        for label, cl, amp in variants:
            out.setdefault(f"step_{label}_img_s", []).append(
                time_model_step(name, args, device, channels_last=cl, amp=amp, steps=n)
            )
    for impl in ("default", "foreach", "fused"):
        if impl == "fused" and device.type not in ("cuda", "cpu"):
            continue
        out[f"optimizer_{impl}_ms"] = time_optimizer_step(name, device, impl, steps=10)
    return {k: statistics.median(v) if isinstance(v, list) else v for k, v in out.items()}


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS, help="models to time")
    p.add_argument("--steps", type=int, default=20, help="timed steps per loop and repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (both loops)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians reported")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="training device")
    p.add_argument(
        "--ref-workers",
        type=int,
        default=None,
        help="DataLoader workers of the reference (default: 0 on CPU, 8 on CUDA)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cnnbench loop in channels_last (default: on; the reference stays NCHW)",
    )
    p.add_argument(
        "--amp",
        choices=["off", "bf16"],
        default=None,
        help="cnnbench loop autocast (default: bf16 on CUDA, off on CPU)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the cnnbench model")
    p.add_argument(
        "--optimizer-impl",
        choices=["default", "foreach", "fused"],
        default="default",
        help="cnnbench loop SGD implementation (default: what build_optimizer gives)",
    )
    p.add_argument("--decompose", action="store_true", help="also time data / model / optimizer")
    p.add_argument("--try-bf16", action="store_true", help="decomposition also times bf16")
    p.add_argument("--skip-reference", action="store_true", help="time the cnnbench loop only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="default: $CNNBENCH_DATA")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if args.ref_workers is None:
        args.ref_workers = 8 if cuda else 0
    if args.channels_last is None:
        args.channels_last = True
    if args.amp is None:
        args.amp = "bf16" if cuda else "off"
    return args


def environment(device: torch.device) -> dict[str, Any]:
    """``cnnbench.env.environment`` (versions, git commit, threads...) plus what this script
    has always recorded: date, torch / python versions, CPU, cores, command and load."""
    env = cnnbench_environment(device)
    return {
        **env,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": env["versions"]["torch"],
        "python": env["versions"]["python"],
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        # "cpu", or the GPU's name, as this script's JSON always said
        "device": env["device_name"] if device.type == "cuda" else "cpu",
        "command": " ".join(sys.argv),
        "loadavg_start": loadavg(),
    }


def loadavg() -> list[str] | None:
    """1, 5 and 15 minute load averages (Linux): how shared the machine was."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU available")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ds = load_dataset("cifar10", data_dir=args.data_dir, show_progress=False)
    # The whole training set lives on the training device as uint8 (150 MB for CIFAR-10).
    data = (ds.x_train.to(device), ds.y_train.to(device))
    results: dict[str, Any] = {"environment": environment(device), "args": vars(args)}
    print(json.dumps(results["environment"]), flush=True)
    rows = []
    for name in args.models:
        ours, ref = [], []
        for rep in range(args.repeats):
            ours.append(time_cnnbench(name, data, ds, args, device))
            if not args.skip_reference:
                ref.append(time_reference(name, ds, args, device))
            print(
                f"  {name} repeat {rep + 1}: cnnbench {ours[-1]:.1f} img/s"
                + (f", reference {ref[-1]:.1f} img/s" if ref else ""),
                flush=True,
            )
        row: dict[str, Any] = {"model": name, "cnnbench_img_s": ours, "reference_img_s": ref}
        row["cnnbench_median"] = statistics.median(ours)
        if ref:
            row["reference_median"] = statistics.median(ref)
            row["ratio"] = row["cnnbench_median"] / row["reference_median"]
        if args.decompose:
            row["decomposition"] = decompose(name, ds, data, args, device)
            print(f"  {name} decomposition: {json.dumps(row['decomposition'])}", flush=True)
        rows.append(row)
    results["rows"] = rows
    results["environment"]["loadavg_end"] = loadavg()
    print(f"\n{'model':<22}{'cnnbench img/s':>16}{'reference img/s':>17}{'ratio':>8}")
    for r in rows:
        ref_s = f"{r['reference_median']:.1f}" if "reference_median" in r else "-"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
        print(f"{r['model']:<22}{r['cnnbench_median']:>16.1f}{ref_s:>17}{ratio:>8}")
    print(
        f"(device {args.device}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
        f"{args.warmup} warm-up + {args.steps} timed steps x {args.repeats} interleaved "
        f"repeats, reference DataLoader workers {args.ref_workers}, cnnbench channels_last "
        f"{args.channels_last}, amp {args.amp}, compile {args.compile})"
    )
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
