"""The training step's precision: ``--amp auto | fastest | off | bf16 | fp16``.

``auto`` decides by hardware: bf16 on CUDA and on CPUs with bf16 matrix units (Intel AMX),
float32 elsewhere. That is right for networks of standard convolutions (a ResNet-20 step is
~1.8x faster in bf16 on this project's AMX VM); for depthwise nets the gain is smaller and
the evidence mixed (the reduced MobileNetV2 averaged 66 img/s over a bf16 run's epochs and 90
over a float32 run's, in different sittings and loads, yet steps timed back to back on a
quiet machine put bf16 1.2-1.3x ahead). ``fastest`` therefore measures: it times a few real
steps of the run's own model, batch and optimizer in each precision this machine can run
fast and trains in the faster one. The choice and its timings are written down
(``config.yaml`` gets the chosen ``amp``; the summary gets ``amp_probe``), so the run is
reproducible and a resumed run keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["amp_dtype_for", "cpu_has_bf16_matmul", "eval_amp_dtype", "fastest_amp"]

_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX tiles).

    Where it does, oneDNN runs bf16 standard convolutions about twice as fast as float32 ones
    (measured by ``benchmarks/amp_cpu.py``); elsewhere bf16 on a CPU is emulated and slower.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:  # pragma: no cover - an old or unusual build
        return False


def _fast_bf16(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16_matmul())


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """The training step's autocast dtype for a resolved ``amp`` choice.

    ``auto``: bf16 on CUDA and on CPUs with bf16 matrix units (AMX), float32 elsewhere.
    ``fastest`` must have been resolved by :func:`fastest_amp` first. Evaluation does not
    follow it on the CPU: see :func:`eval_amp_dtype`.
    """
    if amp == "fastest":
        raise ValueError("amp 'fastest' is resolved by timing steps (fastest_amp) first")
    if amp == "auto":
        amp = "bf16" if _fast_bf16(device) else "off"
    return _DTYPES[amp]


def eval_amp_dtype(amp_dtype: torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """Validation and test run in float32 on a CPU, the precision a CPU deployment serves
    (ONNX Runtime fp32), so that a card's accuracy is the accuracy the exported model has."""
    return amp_dtype if device.type == "cuda" else None


def fastest_amp(
    device: torch.device,
    time_step: Callable[[torch.dtype | None], float],
) -> tuple[str, dict[str, Any]]:
    """The faster of float32 (``off``) and bf16 for this run: ``time_step(dtype)`` gives the
    mean seconds of a real training step in that autocast dtype (``budget.time_steps``).

    bf16 is a candidate only where this machine runs it in hardware (CUDA, AMX); elsewhere
    the answer is ``off`` without timing. fp16 is never picked: it needs a loss scaler and
    buys nothing over bf16 where bf16 is fast. Returns the choice and a record of it.
    """
    candidates = ["off", "bf16"] if _fast_bf16(device) else ["off"]
    step_s = {c: time_step(_DTYPES[c]) for c in candidates} if len(candidates) > 1 else {}
    chosen = min(step_s, key=step_s.__getitem__) if step_s else "off"
    return chosen, {"chosen": chosen, "step_s": step_s, "candidates": candidates}


def time_precision(
    model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batches: Iterator[tuple[torch.Tensor, ...]], loss_fn: Callable, *,
    ema_decay: float | None, sync: Callable[[], None], device_type: str,
) -> Callable[[torch.dtype | None], float]:  # fmt: skip
    """``time_step(dtype)`` for :func:`fastest_amp`: ``budget.time_steps`` on a copy of
    ``model`` (left untouched) with the run's optimizer, batches, loss and EMA."""
    from cnnbench.train import budget

    def time_step(dtype: torch.dtype | None) -> float:
        return budget.time_steps(model, make_optimizer, batches, loss_fn, ema_decay=ema_decay,
                                 sync=sync, amp_dtype=dtype, device_type=device_type)  # fmt: skip

    return time_step
