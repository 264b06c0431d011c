"""FastNet: an all-standard-convolution CIFAR network in the style of the fastest CIFAR-10
trainers (Page 2018, "How to train your ResNet"; tysam-code's hlb-cifar10; Jordan 2024,
"94% on CIFAR-10 in 3.29 seconds on a single GPU", the airbench94 network), written for
cnnbench's model face.

Why it is here: on a CPU, plain 3x3 convolutions run near the cores' FMA peak while
depthwise convolutions use about a quarter of it (measured in issue 13), so at an equal
training budget a plain conv net learns far more per second than a MobileNet.

The network, for 3x32x32 inputs:

- a 2x2 **patch-whitening** convolution without padding (32 -> 31), ``2 * 12 = 24`` filters:
  the eigenvectors of the covariance of the training images' 2x2x3 patches, each scaled by
  ``1 / sqrt(eigenvalue + eps)``, and their negatives (so GELU keeps both signs). The filters
  are computed by ``init_from_data`` from training images only and stay frozen: they are a
  buffer, not a parameter (288 numbers not in the parameter count); the bias is learned.
  Until ``init_from_data`` is called the filters are a fixed random orthogonal-ish init, so
  a model built by name is usable (and exportable) before any data is seen.
- three groups of ``conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU`` with
  widths ``widths`` (31 -> 15 -> 7 -> 3), convolutions without bias (BN follows);
- a final 3x3 max-pool (3 -> 1), flatten, and the linear ``head``.
- ``feature_scale`` (default 1/9) multiplies the pooled features: the published networks
  scale the logits by 1/9; scaling the head's input does the same for the weights and keeps
  ``forward == head(forward_features)``.
- ``dirac=True`` initialises the first ``in_channels`` filters of every 3x3 conv as an
  identity (Dirac) kernel on top of PyTorch's default init, which the airbench ablations
  found to save about a quarter of the epochs.

Nothing here is CIFAR-specific except the input size the widths were chosen for; there is no
stride anywhere (downsampling is the max-pools), so larger inputs work and cost more.
MACs at 32x32: ``fastnet_tiny`` (16/64/64) 10.1 M, ``fastnet_16_64_128`` 12.9 M, ``fastnet_small`` (32/128/128) 33.1 M,
``fastnet_medium`` (48/192/192) 69.1 M, ``fastnet_base`` (64/256/256) 118.1 M, ``fastnet_large``
(128/384/384) 301.6 M.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ._base import CNNBenchModel
from ._registry import register_model

WHITEN_KERNEL = 2  # pixels; 2x2x3 = 12-dimensional patches


class ConvGroup(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU."""

    def __init__(self, inp: int, oup: int, dirac: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inp, oup, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(oup)
        self.conv2 = nn.Conv2d(oup, oup, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(oup)
        if dirac:
            for conv in (self.conv1, self.conv2):
                w = conv.weight.data
                n = min(w.shape[0], w.shape[1])
                nn.init.dirac_(w[:n])  # identity on the first n filters, default init on the rest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(self.pool(self.conv1(x))))
        return F.gelu(self.bn2(self.conv2(x)))


class Whiten(nn.Module):
    """The frozen 2x2 patch-whitening conv (filters are a buffer) with a learned bias, + GELU."""

    def __init__(self, in_chans: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        patch = in_chans * WHITEN_KERNEL * WHITEN_KERNEL
        g = torch.Generator().manual_seed(0)
        init = torch.linalg.qr(torch.randn(patch, patch, generator=g))[0]
        init = init.reshape(patch, in_chans, WHITEN_KERNEL, WHITEN_KERNEL)
        self.register_buffer("weight", torch.cat([init, -init]))
        self.bias = nn.Parameter(torch.zeros(2 * patch))

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Filters from the covariance (float64) of every 2x2 patch of ``images``."""
        c = self.weight.shape[1]
        if images.ndim != 4 or images.shape[1] != c:
            raise ValueError(f"expected (N, {c}, H, W) images, got shape {tuple(images.shape)}")
        x = images.detach().to(torch.float64, memory_format=torch.contiguous_format)
        patches = F.unfold(x, WHITEN_KERNEL).transpose(1, 2).reshape(-1, c * WHITEN_KERNEL**2)
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + self.eps)[:, None]
        filters = filters.reshape(-1, c, WHITEN_KERNEL, WHITEN_KERNEL)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype)))


class FastNet(CNNBenchModel):
    """Patch-whitening stem, three conv groups, max-pool, linear head."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 256, 256),
        feature_scale: float = 1 / 9,
        dirac: bool = True,
        whiten_eps: float = 5e-4,
    ) -> None:
        widths = [int(w) for w in widths]
        if len(widths) != 3 or any(w < 1 for w in widths):
            raise ValueError(f"widths must be three positive integers, got {widths}")
        if feature_scale <= 0:
            raise ValueError(f"feature_scale must be > 0, got {feature_scale}")
        super().__init__(num_features=widths[-1])
        stem = 2 * in_chans * WHITEN_KERNEL * WHITEN_KERNEL
        self.stem = Whiten(in_chans, whiten_eps)
        self.groups = nn.Sequential(
            ConvGroup(stem, widths[0], dirac),
            ConvGroup(widths[0], widths[1], dirac),
            ConvGroup(widths[1], widths[2], dirac),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)  # 3x3 -> 1x1 at 32x32 inputs, as MaxPool2d(3)
        self.feature_scale = feature_scale
        self.reset_classifier(num_classes)

    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the whitening filters from normalised training images (N, C, H, W).

        The trainer passes training images only, never validation or test images.
        """
        self.stem.fit(images)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.groups(self.stem(x))).flatten(1)
        return x * self.feature_scale

    def freeze_groups(self) -> list[nn.Module]:
        return [self.stem, *self.groups]


def _build(num_classes: int, in_chans: int, widths: Sequence[int], **kw) -> FastNet:
    return FastNet(num_classes=num_classes, in_chans=in_chans, widths=widths, **kw)


@register_model
def fastnet(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    widths: Sequence[int] = (64, 256, 256),
    feature_scale: float = 1 / 9,
    dirac: bool = True,
) -> FastNet:
    """FastNet with any widths (patch-whitening stem + 3 plain conv groups; airbench-style)."""
    return _build(num_classes, in_chans, widths, feature_scale=feature_scale, dirac=dirac)


@register_model
def fastnet_tiny(*, num_classes: int = 10, in_chans: int = 3, dirac: bool = True) -> FastNet:
    """FastNet 16/64/64: ~10 M MACs, the sub-0.5 ms candidate."""
    return _build(num_classes, in_chans, (16, 64, 64), dirac=dirac)


@register_model
def fastnet_16_64_128(*, num_classes: int = 10, in_chans: int = 3, dirac: bool = True) -> FastNet:
    """FastNet 16/64/128: ~12.9 M MACs, the sub-0.5 ms point (0.15-0.17x MobileNetV2's batch-1
    latency on one core, docs/frontier.md): ``fastnet_tiny`` with a last group twice as wide,
    which costs little at 7x7 and 3x3."""
    return _build(num_classes, in_chans, (16, 64, 128), dirac=dirac)


@register_model
def fastnet_24_96(*, num_classes: int = 10, in_chans: int = 3, dirac: bool = True) -> FastNet:
    """FastNet 24/96/96: ~20 M MACs, 0.24x MobileNetV2's batch-1 latency on one core."""
    return _build(num_classes, in_chans, (24, 96, 96), dirac=dirac)


@register_model
def fastnet_40_160(*, num_classes: int = 10, in_chans: int = 3, dirac: bool = True) -> FastNet:
    """FastNet 40/160/160: ~49 M MACs, 0.46x MobileNetV2's batch-1 latency on one core
    (docs/frontier.md)."""
    return _build(num_classes, in_chans, (40, 160, 160), dirac=dirac)


@register_model
def fastnet_small(*, num_classes: int = 10, in_chans: int = 3, dirac: bool = True) -> FastNet:
    """FastNet 32/128/128: ~33 M MACs, trains at ~700 img/s on two CPU cores; the frontier
    model (0.29x MobileNetV2's batch-1 latency on one core, docs/frontier.md)."""
    return _build(num_classes, in_chans, (32, 128, 128), dirac=dirac)


@register_model
def fastnet_medium(*, num_classes: int = 10, in_chans: int = 3, dirac: bool = True) -> FastNet:
    """FastNet 48/192/192: ~69 M MACs (1.2-1.4 ms batch-1 on one core of the team's CPU)."""
    return _build(num_classes, in_chans, (48, 192, 192), dirac=dirac)


@register_model
def fastnet_base(*, num_classes: int = 10, in_chans: int = 3, dirac: bool = True) -> FastNet:
    """FastNet 64/256/256: ~118 M MACs, the airbench94 network's shape."""
    return _build(num_classes, in_chans, (64, 256, 256), dirac=dirac)


@register_model
def fastnet_large(*, num_classes: int = 10, in_chans: int = 3, dirac: bool = True) -> FastNet:
    """FastNet 128/384/384: ~302 M MACs (2.6x fastnet_base), the widths of airbench95 (Jordan
    2024); the zoo's most accurate CIFAR-10 model, from a 45-minute budget on two CPU cores."""
    return _build(num_classes, in_chans, (128, 384, 384), dirac=dirac)
