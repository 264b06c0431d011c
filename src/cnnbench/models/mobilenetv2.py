"""MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov, Chen 2018, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks").

The paper's network: a 32-channel 3x3 stem, 17 inverted-residual blocks from the table below,
a 1x1 conv to 1280 channels, global average pooling, dropout and a linear classifier. Channel
counts are scaled by ``width_mult`` and rounded to multiples of 8 by ``_make_divisible``; the
last conv is never made narrower than 1280 (as in the paper and torchvision). The residual
connection is used only when ``stride == 1 and inp == oup`` - no projection shortcut is added
elsewhere (the kuangliu/pytorch-cifar version silently adds one, which changes the model).

Changes for 32x32 inputs (``strides="cifar"``, the default):

- NOTE: the stem conv has stride 1 instead of 2.
- NOTE: the first stride-2 row of the table (``t=6, c=24`` in the paper's table) has stride 1.

This gives a total downsampling of 8 (32x32 -> 4x4 before pooling) instead of 32 (which would
leave a 1x1 map after the fourth stage). ``strides="imagenet"`` uses the stem stride 2 and the
table's strides as written. The same rule applies to a user-supplied
``inverted_residual_setting``: "cifar" sets the stem and the table's first stride-2 row to
stride 1. Strides do not change the parameter count (2,236,682 with 10 classes, equal to
torchvision's ``mobilenet_v2(num_classes=10)``; tested).

Dropout (``dropout``, default 0.2 as in torchvision) is the last step of ``forward_features``,
so ``head`` stays a plain ``nn.Linear`` and ``forward == head(forward_features)`` holds; in
eval mode dropout is the identity, so extracted features are deterministic.

Width variants, registered by name with the CIFAR strides by default: ``mobilenetv2_x0_5``
and ``mobilenetv2_x0_75`` (``mobilenetv2`` is x1.0; any other multiplier is
``mobilenetv2(width_mult=...)``). At 32x32 with 10 classes they have 700,490 / 1,368,234 /
2,236,682 parameters and 27.97 M / 59.31 M / 87.98 M MACs (``cnnbench.profile.count_macs``;
tested), the same as the CIFAR model zoos' MobileNetV2 x0.5 / x0.75 / x1.0 (e.g.
chenyaofo/pytorch-cifar-models: 0.70 M / 27.97 M, 1.37 M / 59.31 M, 2.24 M / 87.98 M): they
use the same two stride changes and also keep the last conv at 1280 channels for
``width_mult < 1``. That 1280-channel 1x1 conv and the 1280-wide head are why the narrow
variants shrink less than ``width_mult**2`` would suggest: at x0.5 they (with the conv's BN)
hold 220,170 of the 700,490 parameters (31%) but only 3.3 M of the 28.0 M MACs (the conv runs
on the 4x4 map).

The building blocks here (``_make_divisible``, ``ConvBNReLU6``, ``InvertedResidual``,
``MobileNetV2``) are shared with ``mobilenetv2_reduced``, which is this architecture with a
shorter table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ._base import CNNBenchModel
from ._registry import register_model

# t, c, n, s  (expansion factor, output channels, repeats, stride of the first repeat)
INVERTED_RESIDUAL_SETTING: list[list[int]] = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],  # NOTE: stride 2 -> 1 with strides="cifar"
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never going down by more than 10%.

    From the TensorFlow reference implementation (and torchvision): hardware runs channel
    counts that are multiples of 8 faster.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias: BN follows) + BatchNorm + ReLU6, 'same' padding for odd kernels."""

    def __init__(
        self, inp: int, oup: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(oup),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection (no activation after it).

    The residual is added only when ``stride == 1 and inp == oup``.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:  # t=1: the depthwise conv works on the input directly
            layers.append(ConvBNReLU6(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            # Linear bottleneck: ReLU here would destroy information in the narrow tensor.
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


def _check_setting(setting: Sequence[Sequence[int]]) -> list[list[int]]:
    rows = [list(row) for row in setting]
    if not rows:
        raise ValueError("inverted_residual_setting must have at least one [t, c, n, s] row")
    for row in rows:
        if len(row) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in row):
            raise ValueError(
                f"each inverted_residual_setting row must be 4 ints [t, c, n, s], got {row}"
            )
        t, c, n, s = row
        if t < 1 or c < 1 or n < 1 or s not in (1, 2):
            raise ValueError(f"bad [t, c, n, s] row {row}: need t, c, n >= 1 and s in (1, 2)")
    return rows


class MobileNetV2(CNNBenchModel):
    """MobileNetV2 built from a ``[t, c, n, s]`` table; see the module docstring."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        strides: Literal["cifar", "imagenet"] = "cifar",
        inverted_residual_setting: Sequence[Sequence[int]] | None = None,
        round_nearest: int = 8,
    ) -> None:
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if strides not in ("cifar", "imagenet"):
            raise ValueError(f"strides must be 'cifar' or 'imagenet', got {strides!r}")
        setting = _check_setting(
            INVERTED_RESIDUAL_SETTING
            if inverted_residual_setting is None
            else inverted_residual_setting
        )
        stem_stride = 2
        if strides == "cifar":
            # NOTE: stem stride 2 -> 1 and first stride-2 row -> 1 for 32x32 inputs.
            stem_stride = 1
            for row in setting:
                if row[3] == 2:
                    row[3] = 1
                    break

        input_channel = _make_divisible(32 * width_mult, round_nearest)
        last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        super().__init__(num_features=last_channel)

        self.stem = ConvBNReLU6(in_chans, input_channel, stride=stem_stride)
        blocks: list[nn.Module] = []
        for t, c, n, s in setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                blocks.append(
                    InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t)
                )
                input_channel = output_channel
        self.blocks = nn.Sequential(*blocks)
        self.final_conv = ConvBNReLU6(input_channel, last_channel, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.reset_classifier(num_classes)

    def _init_head(self, head: nn.Linear) -> None:
        # torchvision's MobileNetV2 classifier init.
        nn.init.normal_(head.weight, 0, 0.01)
        nn.init.zeros_(head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_conv(self.blocks(self.stem(x)))
        return self.dropout(torch.flatten(self.pool(x), 1))

    def freeze_groups(self) -> list[nn.Module]:
        """The stem, every inverted-residual block in order, then the final 1x1 conv."""
        return [self.stem, *self.blocks, self.final_conv]


@register_model
def mobilenetv2(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    strides: Literal["cifar", "imagenet"] = "cifar",
    inverted_residual_setting: Sequence[Sequence[int]] | None = None,
) -> MobileNetV2:
    """MobileNetV2 with the paper's 17-block table; CIFAR strides by default."""
    return MobileNetV2(
        num_classes=num_classes,
        in_chans=in_chans,
        width_mult=width_mult,
        dropout=dropout,
        strides=strides,
        inverted_residual_setting=inverted_residual_setting,
    )


@register_model
def mobilenetv2_x0_5(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    dropout: float = 0.2,
    strides: Literal["cifar", "imagenet"] = "cifar",
    inverted_residual_setting: Sequence[Sequence[int]] | None = None,
) -> MobileNetV2:
    """MobileNetV2 at width 0.5 (last conv stays 1280): ~0.70 M params, ~28 M MACs."""
    return mobilenetv2(
        num_classes=num_classes,
        in_chans=in_chans,
        width_mult=0.5,
        dropout=dropout,
        strides=strides,
        inverted_residual_setting=inverted_residual_setting,
    )


@register_model
def mobilenetv2_x0_75(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    dropout: float = 0.2,
    strides: Literal["cifar", "imagenet"] = "cifar",
    inverted_residual_setting: Sequence[Sequence[int]] | None = None,
) -> MobileNetV2:
    """MobileNetV2 at width 0.75 (last conv stays 1280): ~1.37 M params, ~59 M MACs."""
    return mobilenetv2(
        num_classes=num_classes,
        in_chans=in_chans,
        width_mult=0.75,
        dropout=dropout,
        strides=strides,
        inverted_residual_setting=inverted_residual_setting,
    )
