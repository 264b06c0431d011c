"""Static cost of a model: parameters and multiply-accumulates (MACs) of one inference."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)) -> int:
    """MACs of one forward pass on a single image, counted by torch.utils.flop_counter.

    The counter reports FLOPs of matmuls and convolutions (2 per multiply-accumulate); we
    return MACs, the unit papers quote for CNNs. Elementwise ops (BN, ReLU, adds) are not
    counted, as is usual.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
