"""ResNet-34 (He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition").

BasicBlock stages of (3, 4, 6, 3) blocks with widths 64, 128, 256, 512, global average pooling
and a ``Linear(512, num_classes)`` head. Projection (1x1 conv + BN) shortcuts where the shape
changes (option B of the paper), as torchvision does.

Changes for 32x32 inputs (``stem="cifar"``, the default):

- NOTE: the stem is a 3x3 stride-1 conv instead of the 7x7 stride-2 conv, and there is no
  3x3 stride-2 max-pool. The ImageNet stem would shrink a 32x32 image to 8x8 before the first
  stage and leave a 1x1 map for the last one; with the CIFAR stem the stages see 32, 16, 8, 4.

``stem="imagenet"`` is the paper's stem; its parameter count equals torchvision's
``resnet34`` (tested). Initialisation follows torchvision: Kaiming-normal (fan_out) convs,
BN weight 1 and bias 0; ``zero_init_residual=True`` zeroes the last BN gamma of each residual
branch so every block starts as the identity (Goyal et al. 2017).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._base import CNNBenchModel
from ._registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut; a projection shortcut only where the shape changes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(CNNBenchModel):
    """ResNet with BasicBlocks; ``layers`` gives the number of blocks per stage."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        stem: Literal["cifar", "imagenet"] = "cifar",
        zero_init_residual: bool = False,
    ) -> None:
        widths = (64, 128, 256, 512)
        super().__init__(num_features=widths[-1])
        if stem == "cifar":
            # NOTE: 3x3 stride-1 conv, no max-pool, for 32x32 inputs (see module docstring).
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
            )
        elif stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")

        inplanes = 64
        stages = []
        for i, (width, n) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2  # the first stage keeps the stem's resolution
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(inplanes, width, stride if j == 0 else 1))
                inplanes = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)

    def freeze_groups(self) -> list[nn.Module]:
        """The stem, then every residual block in order (17 groups for ResNet-34)."""
        return [
            self.stem,
            *self.layer1,
            *self.layer2,
            *self.layer3,
            *self.layer4,
        ]


@register_model
def resnet34(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    stem: Literal["cifar", "imagenet"] = "cifar",
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-34; ``stem="cifar"`` (default) for 32x32 inputs, ``"imagenet"`` as in the paper."""
    return ResNet(
        (3, 4, 6, 3),
        num_classes=num_classes,
        in_chans=in_chans,
        stem=stem,
        zero_init_residual=zero_init_residual,
    )
