"""The CIFAR ResNets: ResNet-20 (and any depth 6n+2) from He, Zhang, Ren, Sun 2016, "Deep
Residual Learning for Image Recognition", section 4.2, and ResNet-8, the MLPerf Tiny
image-classification reference model (Banbury et al. 2021, "MLPerf Tiny Benchmark").

Both are the same family: a 3x3 stem conv to 16 channels (+ BN + ReLU), three stages of
basic blocks (two 3x3 convs, BN after each, ReLU after the first and after the residual add)
at 16, 32 and 64 channels, stride 2 in the first block of stages 2 and 3, global average
pooling and ``head = Linear(64, num_classes)``. Both were designed for 32x32 inputs, so there
is no change for 32x32: the stages see 32x32, 16x16 and 8x8 maps.

``resnet20`` / ``resnet_cifar(depth=6n+2)``: n blocks per stage, 6n + 2 weighted layers
(stem, 6n 3x3 convs, head; ResNet-20 has n = 3: 19 3x3 convs + the head).

- NOTE: shortcuts. The paper's CIFAR nets use option A: an identity shortcut everywhere,
  zero-padding the extra channels and subsampling by 2 where the shape changes, which adds
  no parameters. Here the two shape-changing shortcuts are option B instead, a 1x1 stride-2
  conv + BN (as ``resnet34`` and torchvision do, and as the paper's ImageNet nets do): it
  needs no hand-written padding op and exports cleanly. The cost is 2,752 parameters
  (16*32 + 32*64 conv weights + 2 * (32 + 64) BN) and 0.26 M MACs: ResNet-20 has 272,474
  parameters here (10 classes) against 269,722 with option A (the paper's "0.27M"), and
  40.81 M MACs against 40.55 M; the same as the option-B ResNet-20 of the CIFAR model zoos
  (chenyaofo/pytorch-cifar-models lists 0.27 M parameters and 40.81 M multiply-adds).

``resnet8``: the MLPerf Tiny reference (``resnet_v1_eembc`` in
``mlcommons/tiny/benchmark/training/image_classification/keras_model.py``), ONE basic block
per stage (strides 1/2/2) and, on stages 2 and 3, a projection shortcut that is a bare 1x1
stride-2 conv with a bias and no BN, as in the reference. Where this differs from the Keras
reference, on purpose:

- NOTE: the 3x3 convs have no bias (every one is followed by BN, which removes a bias
  exactly). The reference's Keras ``Conv2D`` layers keep their default biases: 240 more
  trainable numbers (78,186 against our 77,946 with 10 classes, counted from the reference's
  layers; a Keras summary's "total params" would also count the 480 BN running statistics,
  78,666). MACs are the same, 12.5 M.
- NOTE: PyTorch's symmetric ``padding=1`` for the stride-2 3x3 convs instead of TF's
  ``"same"``, which pads only bottom/right on even inputs: the sampling grid of those convs
  is shifted by one pixel relative to the reference; counts and shapes are identical.
- BN uses PyTorch's defaults (momentum 0.1, eps 1e-5; Keras: momentum 0.99, i.e. 0.01 here,
  eps 1e-3). The reference's L2 weight decay (1e-4) is a training setting, not part of the
  model.

Initialisation (both): Kaiming-normal (fan_out, ReLU) convs, BN weight 1 and bias 0, the
ResNet-8 shortcut bias 0 (the Keras default), PyTorch's default for the head.
``zero_init_residual=True`` zeroes the last BN gamma of every block (Goyal et al. 2017), so
each block starts as its shortcut.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._base import CNNBenchModel
from ._registry import register_model
from .resnet34 import BasicBlock

WIDTHS = (16, 32, 64)  # channels of stages 1, 2, 3 (the stem has WIDTHS[0])


class MLPerfTinyBlock(BasicBlock):
    """BasicBlock whose projection shortcut is a bare 1x1 conv with bias (MLPerf Tiny)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__(inplanes, planes, stride)
        if self.downsample is not None:
            self.downsample = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=True)


class CifarResNet(CNNBenchModel):
    """16-channel stem, three stages of ``blocks_per_stage`` basic blocks, average pool, head.

    ``shortcut="conv_bn"``: projection shortcuts are 1x1 conv + BN (He et al., option B);
    ``shortcut="conv"``: a 1x1 conv with bias and no BN (MLPerf Tiny ResNet-8).
    """

    def __init__(
        self,
        blocks_per_stage: int,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        shortcut: Literal["conv_bn", "conv"] = "conv_bn",
        zero_init_residual: bool = False,
    ) -> None:
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        blocks = {"conv_bn": BasicBlock, "conv": MLPerfTinyBlock}
        if shortcut not in blocks:
            raise ValueError(f"shortcut must be 'conv_bn' or 'conv', got {shortcut!r}")
        block = blocks[shortcut]
        super().__init__(num_features=WIDTHS[-1])
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, WIDTHS[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        inplanes = WIDTHS[0]
        stages = []
        for i, width in enumerate(WIDTHS):
            stride = 1 if i == 0 else 2  # 32 -> 32 -> 16 -> 8
            layers = []
            for j in range(blocks_per_stage):
                layers.append(block(inplanes, width, stride if j == 0 else 1))
                inplanes = width
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return torch.flatten(self.pool(x), 1)

    def freeze_groups(self) -> list[nn.Module]:
        """The stem, then the three stages."""
        return [self.stem, self.stage1, self.stage2, self.stage3]


@register_model
def resnet_cifar(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    depth: int = 20,
    zero_init_residual: bool = False,
) -> CifarResNet:
    """He et al.'s CIFAR ResNet of any depth 6n+2 (20, 32, 44, 56, 110, ...); option-B shortcuts."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth!r}")
    return CifarResNet(
        (depth - 2) // 6,
        num_classes=num_classes,
        in_chans=in_chans,
        shortcut="conv_bn",
        zero_init_residual=zero_init_residual,
    )


@register_model
def resnet20(
    *, num_classes: int = 10, in_chans: int = 3, zero_init_residual: bool = False
) -> CifarResNet:
    """ResNet-20 (He et al. 2016, CIFAR): 3x3 blocks at 16/32/64, ~0.27 M params, ~41 M MACs."""
    return resnet_cifar(
        num_classes=num_classes,
        in_chans=in_chans,
        depth=20,
        zero_init_residual=zero_init_residual,
    )


@register_model
def resnet8(
    *, num_classes: int = 10, in_chans: int = 3, zero_init_residual: bool = False
) -> CifarResNet:
    """ResNet-8, the MLPerf Tiny image-classification reference: ~78 k params, ~12.5 M MACs."""
    return CifarResNet(
        1,
        num_classes=num_classes,
        in_chans=in_chans,
        shortcut="conv",
        zero_init_residual=zero_init_residual,
    )
