"""Data-parallel training with PyTorch DDP, launched by ``torchrun``.

``torchrun --nproc_per_node=K -m cnnbench train ...`` starts K processes with RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT in their environment; ``init_from_env`` joins
them into one process group (NCCL on GPUs, gloo on CPUs). Every rank draws the same epoch
order and augmentation (same seeded generator), takes every K-th image of each global batch
(``BatchIterator(shard=(rank, K))``), and DDP averages the gradients: with ``batch_size`` the
*global* batch, a K-process run follows the single-process run step for step, up to float
summation order and BatchNorm statistics (computed per rank, over batch_size / K images, as
usual for DDP; models without BatchNorm, such as lenet5, match exactly up to rounding).

Only rank 0 writes the run directory and checkpoints; all ranks load ``last.pt`` on resume.
Validation and test run on every rank over the full split (identical weights give identical
results, so no reduction is needed and no rank waits on another to pick the best epoch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        return (self.rank, self.world_size) if self.enabled else None


def init_from_env(device_type: str) -> DistInfo:
    """Join the torchrun process group if WORLD_SIZE > 1; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def all_reduce_sum(values: list[float], device: torch.device, info: DistInfo) -> list[float]:
    """Sum a few scalars over all ranks (one collective per epoch, not per batch)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group at the end of a run."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
