"""Depthwise-separable cost analysis of a MobileNetV2, block by block (`cnnbench bench --cost`).

The study's formula (Howard et al. 2017, MobileNets, eq. 5): a D_K x D_K depthwise conv on M
channels followed by a 1x1 pointwise conv to N channels costs

    (D_K^2 * M * H * W + M * N * H * W) / (D_K^2 * M * N * H * W) = 1/N + 1/D_K^2

of a standard D_K x D_K conv from M to N channels at the same output size (0.112 for N=1024,
D_K=3). In an inverted-residual block the depthwise conv works on the expanded M channels
and the pointwise conv is the linear projection to the block's N output channels, so per
block we compare: counted MACs of (depthwise + projection) against the counted MACs of a
standard conv M -> N with the depthwise conv's kernel, stride and padding. Both sides are
counted by ``torch.utils.flop_counter.FlopCounterMode`` (the standard conv is built on the
``meta`` device: shapes only, no arithmetic), not computed from the formula.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import torch
from torch import nn

__all__ = ["BlockCost", "format_cost", "separable_cost"]


@dataclass
class BlockCost:
    """One inverted-residual block: counted MACs and the formula, per image."""

    index: int
    name: str  # module path, e.g. "blocks.3"
    in_channels: int
    expanded: int  # M: channels of the depthwise conv
    out_channels: int  # N
    kernel: int  # D_K
    stride: int
    out_hw: tuple[int, int]
    expand_macs: int  # 1x1 expansion (0 when t=1); not part of the comparison
    depthwise_macs: int
    pointwise_macs: int  # the linear projection M -> N
    standard_macs: int  # a standard D_K x D_K conv M -> N at the same output size

    @property
    def separable_macs(self) -> int:
        return self.depthwise_macs + self.pointwise_macs

    @property
    def ratio(self) -> float:
        """Measured: (depthwise + pointwise) / standard."""
        return self.separable_macs / self.standard_macs

    @property
    def formula(self) -> float:
        """1/N + 1/D_K^2."""
        return 1 / self.out_channels + 1 / self.kernel**2

    @property
    def exact(self) -> bool:
        """The counted ratio equals the formula as exact fractions (integers throughout)."""
        return Fraction(self.separable_macs, self.standard_macs) == Fraction(
            1, self.out_channels
        ) + Fraction(1, self.kernel**2)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "separable_macs": self.separable_macs,
            "ratio": self.ratio,
            "formula": self.formula,
            "exact": self.exact,
        }


def _is_depthwise(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.Conv2d)
        and m.groups > 1
        and m.groups == m.in_channels == m.out_channels
        and m.kernel_size[0] == m.kernel_size[1]
    )


def _convs(block: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Conv2d)]


def separable_cost(
    model: nn.Module | str, input_size: tuple[int, int, int] = (3, 32, 32)
) -> dict[str, Any]:
    """Per-block and whole-model MACs of a MobileNetV2-style model (a name or a module).

    A block is a module with a ``conv`` sequence holding one depthwise conv followed by a 1x1
    conv (``InvertedResidual``); blocks are found by structure, so any width works.
    """
    from cnnbench.models import create_model

    if isinstance(model, str):
        model = create_model(model)
    root = type(model).__name__
    counts, total, out_hw = _count(model, input_size)

    def macs(path: str) -> int:
        return sum(counts.get(f"{root}.{path}", {}).values()) // 2

    blocks: list[BlockCost] = []
    for name, block in model.named_modules():
        cost = _block_cost(name, block, len(blocks), macs, out_hw)
        if cost is not None:
            blocks.append(cost)
    return {
        "model": getattr(model, "cnnbench_spec", {}).get("name", root),
        "input_size": list(input_size),
        "blocks": [b.as_dict() for b in blocks],
        "totals": _totals(blocks, total),
    }


def _count(
    model: nn.Module, input_size: tuple[int, int, int]
) -> tuple[dict[str, dict[Any, int]], int, dict[str, tuple[int, int]]]:
    """(FLOPs per module path, total MACs, output size of every depthwise conv) of one
    eval-mode forward pass of a zero image."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    out_hw: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
            out_hw[name] = tuple(out.shape[-2:])

        return hook

    hooks = [
        m.register_forward_hook(record(n)) for n, m in model.named_modules() if _is_depthwise(m)
    ]
    try:
        x = torch.zeros(1, *input_size, device=next(model.parameters()).device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return counter.get_flop_counts(), counter.get_total_flops() // 2, out_hw


def _block_cost(
    name: str,
    block: nn.Module,
    index: int,
    macs: Callable[[str], int],
    out_hw: dict[str, tuple[int, int]],
) -> BlockCost | None:
    """The cost of ``block`` if it is one: exactly one depthwise conv, directly followed by a
    1x1 projection; None otherwise."""
    convs = _convs(block)
    dw_at = [i for i, (_, c) in enumerate(convs) if _is_depthwise(c)]
    if not hasattr(block, "conv") or len(dw_at) != 1 or dw_at[0] + 1 >= len(convs):
        return None
    i = dw_at[0]
    (dw_name, dw), (pw_name, pw) = convs[i], convs[i + 1]
    if pw.kernel_size != (1, 1):
        return None
    full_dw, full_pw = f"{name}.{dw_name}", f"{name}.{pw_name}"
    h, w = out_hw[full_dw]
    return BlockCost(
        index=index,
        name=name,
        in_channels=convs[0][1].in_channels,
        expanded=dw.in_channels,
        out_channels=pw.out_channels,
        kernel=dw.kernel_size[0],
        stride=dw.stride[0],
        out_hw=(h, w),
        expand_macs=sum(macs(f"{name}.{n}") for n, _ in convs[:i]),
        depthwise_macs=macs(full_dw),
        pointwise_macs=macs(full_pw),
        standard_macs=_standard_conv_macs(dw, pw, (h, w)),
    )


def _standard_conv_macs(dw: nn.Conv2d, pw: nn.Conv2d, out_hw: tuple[int, int]) -> int:
    """Counted MACs of the standard conv M -> N with the depthwise conv's kernel, stride and
    padding, at the same output size; built on the ``meta`` device (shapes only)."""
    from torch.utils.flop_counter import FlopCounterMode

    std = nn.Conv2d(
        dw.in_channels,
        pw.out_channels,
        dw.kernel_size,
        dw.stride,
        dw.padding,
        bias=False,
        device="meta",
    )
    in_hw = [s * dw.stride[0] for s in out_hw]  # any input giving the same output size
    with FlopCounterMode(display=False) as counter:
        out = std(torch.empty(1, dw.in_channels, *in_hw, device="meta"))
    assert tuple(out.shape[-2:]) == tuple(out_hw), "standard conv output size differs"
    return counter.get_total_flops() // 2


def _totals(blocks: list[BlockCost], model_macs: int) -> dict[str, Any]:
    sep = sum(b.separable_macs for b in blocks)
    std_total = sum(b.standard_macs for b in blocks)
    return {
        "model_macs": model_macs,
        "depthwise_macs": sum(b.depthwise_macs for b in blocks),
        "pointwise_macs": sum(b.pointwise_macs for b in blocks),
        "expand_macs": sum(b.expand_macs for b in blocks),
        "separable_macs": sep,
        "standard_macs": std_total,
        "ratio": sep / std_total if std_total else float("nan"),
        # The whole model if every depthwise + projection pair were a standard conv.
        "model_macs_if_standard": model_macs - sep + std_total,
        "all_exact": all(b.exact for b in blocks),
    }


def format_cost(cost: dict[str, Any]) -> str:
    """The per-block table and the totals, as printed by ``cnnbench bench --cost``."""
    t = cost["totals"]
    lines = [
        f"{cost['model']}: depthwise-separable cost per inverted-residual block "
        f"(input {'x'.join(map(str, cost['input_size']))}, MACs per image)",
        f"{'block':<11}{'M->N':^12}{'k/s':>5}{'out':>7}{'dw MACs':>12}{'pw MACs':>12}"
        f"{'standard MACs':>15}{'measured':>10}{'1/N+1/Dk^2':>12}  agree",
    ]
    for b in cost["blocks"]:
        lines.append(
            f"{b['name']:<11}{b['expanded']:>5}->{b['out_channels']:<5}"
            f"{b['kernel']:>3}/{b['stride']}{'x'.join(map(str, b['out_hw'])):>7}"
            f"{b['depthwise_macs']:>12,}{b['pointwise_macs']:>12,}{b['standard_macs']:>15,}"
            f"{b['ratio']:>10.6f}{b['formula']:>12.6f}  {'exact' if b['exact'] else 'NO'}"
        )
    lines += [
        f"{'all blocks':<35}{t['depthwise_macs']:>12,}{t['pointwise_macs']:>12,}"
        f"{t['standard_macs']:>15,}{t['ratio']:>10.6f}",
        f"whole model: {t['model_macs']:,} MACs counted; with a standard conv in place of every "
        f"depthwise + projection pair: {t['model_macs_if_standard']:,} "
        f"({t['model_macs_if_standard'] / t['model_macs']:.2f}x). 1x1 expansions "
        f"({t['expand_macs']:,} MACs), stem, last conv and head are the same in both.",
        f"formula check: {'every block agrees exactly' if t['all_exact'] else 'MISMATCH'}; "
        f"the paper's example N=1024, D_K=3: {1 / 1024 + 1 / 9:.3f}",
    ]
    return "\n".join(lines)
