"""The face every cnnbench model shows: ``forward_features`` -> ``head``.

Borrowed from timm: one shape for every architecture makes transfer learning, feature plots
and benchmarking one code path instead of one per model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class CNNBenchModel(nn.Module, ABC):
    """Base class: ``forward(x) == head(forward_features(x))``.

    Subclasses build their backbone, set ``num_features`` and call
    ``self.reset_classifier(num_classes)`` last in ``__init__`` (so the head is created in one
    place, with the subclass's head initialisation, see ``_init_head``).
    """

    num_features: int
    num_classes: int
    head: nn.Linear
    cnnbench_spec: dict[str, Any]  # set by create_model; rebuilds the model by name

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, flattened features of shape ``(N, num_features)``."""

    @abstractmethod
    def freeze_groups(self) -> list[nn.Module]:
        """The backbone as parameter groups, input -> output, excluding the head.

        Every non-head parameter belongs to exactly one group; ``last-k`` and ``gradual``
        transfer policies unfreeze from the end of this list.
        """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def _init_head(self, head: nn.Linear) -> None:
        """Initialise a fresh head; PyTorch's default unless a paper says otherwise."""

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh ``nn.Linear(num_features, num_classes)``.

        The new head takes the old head's device and dtype (so a model already on the GPU
        stays usable), and ``cnnbench_spec["num_classes"]`` follows, so a checkpoint saved
        after the reset rebuilds with the right head size.
        """
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        head = nn.Linear(self.num_features, num_classes)
        self._init_head(head)
        old = self._modules.get("head")
        if isinstance(old, nn.Linear):
            head = head.to(device=old.weight.device, dtype=old.weight.dtype)
        self.head = head
        self.num_classes = num_classes
        spec = getattr(self, "cnnbench_spec", None)
        if isinstance(spec, dict):
            spec["num_classes"] = num_classes
