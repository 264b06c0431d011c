"""An exponential moving average of a model's weights (Polyak averaging).

``ModelEMA(model, decay)`` keeps a copy whose floating-point parameters and buffers (BN
running statistics included, as timm's ModelEmaV2) move toward the model's after every
optimizer step: ``ema = ema + (1 - d) * (model - ema)``. The decay ramps up as
``min(decay, (1 + n) / (10 + n))`` over the first updates (TensorFlow's and timm's warm-up),
so early averages are not dominated by the random initialisation. One fused ``_foreach_lerp_``
per step; no host sync.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """The averaged copy of ``model``, in ``self.module`` (always in eval mode)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._bind(model)

    def _bind(self, model: nn.Module) -> None:
        """Pair the averaged tensors with the model's (state dicts share their storage)."""
        ours, theirs = self.module.state_dict(), model.state_dict()
        if ours.keys() != theirs.keys():
            raise ValueError("EMA and model have different state-dict keys")
        self._float = [(ours[k], theirs[k]) for k in ours if ours[k].is_floating_point()]
        self._other = [(ours[k], theirs[k]) for k in ours if not ours[k].is_floating_point()]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """One averaging step toward the bound model's current weights."""
        self.updates += 1
        weight = 1.0 - self.current_decay()
        if self._float:
            torch._foreach_lerp_([a for a, _ in self._float], [b for _, b in self._float], weight)
        for a, b in self._other:
            a.copy_(b)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
