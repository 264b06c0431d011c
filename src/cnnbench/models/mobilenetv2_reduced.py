"""Reduced MobileNetV2: the study's "proposed" model, MobileNetV2 (Sandler et al. 2018) with 10
inverted-residual blocks instead of 17.

The study describes its reduced table only in a figure we do not have, so this table is ours:

    # t, c, n, s
    [1, 16, 1, 1],
    [6, 24, 2, 2],   # NOTE: stride 2 -> 1 with strides="cifar" (the default)
    [6, 32, 2, 2],   # paper: n=3
    [6, 64, 2, 2],   # paper: n=4
    [6, 96, 1, 1],   # paper: n=3
    [6, 160, 1, 2],  # paper: n=3
    [6, 320, 1, 1],

Why this table: every row of the paper's table is kept, so every channel width, every
expansion factor and every stride transition survives - the network still passes through the
same resolution stages and ends in the same 320 -> 1280 features; only repeats are cut. The
repeats of the 32 and 64 stages go from 3/4 to 2 (one block that changes the shape plus one
residual block, so each stage keeps a residual path). The 96 and 160 stages go to a single
block: at 1.0x width their six blocks hold 1.10M of the 1.81M parameters in the paper's 17
blocks, while their 8x8 and 4x4 maps make them the cheapest place to lose depth. With 10
classes the result has 1,236,746 parameters (MobileNetV2: 2,236,682) and about 53M
multiply-adds per 32x32 image (MobileNetV2: about 88M).

The 32x32 changes are the same as ``mobilenetv2`` (``strides="cifar"``: stem stride 1 and the
first stride-2 row stride 1, total downsampling 8); ``strides="imagenet"`` uses the table as
written with a stride-2 stem. ``inverted_residual_setting`` replaces the table, ``width_mult``
and ``dropout`` (default 0.2, the last step of ``forward_features``) work as in
``mobilenetv2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ._registry import register_model
from .mobilenetv2 import MobileNetV2

# t, c, n, s
REDUCED_INVERTED_RESIDUAL_SETTING: list[list[int]] = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],  # NOTE: stride 2 -> 1 with strides="cifar"
    [6, 32, 2, 2],
    [6, 64, 2, 2],
    [6, 96, 1, 1],
    [6, 160, 1, 2],
    [6, 320, 1, 1],
]


@register_model
def mobilenetv2_reduced(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    strides: Literal["cifar", "imagenet"] = "cifar",
    inverted_residual_setting: Sequence[Sequence[int]] | None = None,
) -> MobileNetV2:
    """The study's reduced MobileNetV2: 10 inverted-residual blocks; CIFAR strides by default."""
    return MobileNetV2(
        num_classes=num_classes,
        in_chans=in_chans,
        width_mult=width_mult,
        dropout=dropout,
        strides=strides,
        inverted_residual_setting=(
            REDUCED_INVERTED_RESIDUAL_SETTING
            if inverted_residual_setting is None
            else inverted_residual_setting
        ),
    )
