"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document
recognition").

Changes from the paper, for 3x32x32 colour inputs:

- 3 input channels instead of 1 (``in_chans``); the paper's 32x32 input size is kept, so the
  flattened feature map is 16x5x5 = 400 as in the paper.
- C3 is a full 6 -> 16 convolution, not the paper's hand-picked partial connection table.
- S2/S4 are plain pooling layers, not the paper's subsampling with a trainable coefficient and
  bias; F6 -> output is a linear layer, not RBF units; the activation is a plain sigmoid, not
  the scaled tanh. This "classic" form (sigmoid + average pooling) is the form the study
  trains and the default here.
- ``activation="relu"`` and ``pool="max"`` give the common modern variant.

``forward_features`` returns the 84-dim F6 output; ``head`` is ``Linear(84, num_classes)``.
With 3 input channels and 10 classes the model has 62,006 parameters.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._base import CNNBenchModel
from ._registry import register_model

_ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}
_POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(CNNBenchModel):
    """LeNet-5: two 5x5 conv + pool stages, then 400 -> 120 -> 84 fully connected layers."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        input_size: int = 32,
        activation: Literal["sigmoid", "relu"] = "sigmoid",
        pool: Literal["avg", "max"] = "avg",
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if pool not in _POOLS:
            raise ValueError(f"pool must be one of {sorted(_POOLS)}, got {pool!r}")
        # Two (5x5 valid conv, 2x2 pool) stages: 32 -> 28 -> 14 -> 10 -> 5.
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(
                f"lenet5 needs input_size >= 16 (two 5x5 convs + pools), got {input_size}"
            )
        super().__init__(num_features=84)
        self.input_size = input_size
        act, pool_layer = _ACTIVATIONS[activation], _POOLS[pool]

        self.conv1 = nn.Sequential(nn.Conv2d(in_chans, 6, 5), act(), pool_layer(2))  # C1 + S2
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5), act(), pool_layer(2))  # C3 + S4
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(16 * side * side, 120), act())  # C5
        self.fc2 = nn.Sequential(nn.Linear(120, 84), act())  # F6
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # The flattened size is fixed at construction; say so instead of a matmul shape error.
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise ValueError(
                f"lenet5 was built for {self.input_size}x{self.input_size} inputs, got "
                f"{x.shape[-2]}x{x.shape[-1]}; pass input_size= to create_model"
            )
        return self.fc2(self.fc1(self.conv2(self.conv1(x))))

    def freeze_groups(self) -> list[nn.Module]:
        return [self.conv1, self.conv2, self.fc1, self.fc2]


@register_model
def lenet5(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    input_size: int = 32,
    activation: Literal["sigmoid", "relu"] = "sigmoid",
    pool: Literal["avg", "max"] = "avg",
) -> LeNet5:
    """LeNet-5; default is the study's classic form (sigmoid, average pooling)."""
    return LeNet5(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        pool=pool,
    )


@register_model
def lenet5_relu(*, num_classes: int = 10, in_chans: int = 3, input_size: int = 32) -> LeNet5:
    """LeNet-5 in its common modern form (ReLU, max pooling); same layers and parameters."""
    return LeNet5(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation="relu",
        pool="max",
    )
