"""The depthwise-separable cost analysis: counted MACs agree with 1/N + 1/D_K^2, per block."""

from __future__ import annotations

import math

import pytest

from cnnbench.bench.cost import format_cost, separable_cost
from cnnbench.models import create_model
from cnnbench.profile import count_macs


@pytest.mark.parametrize(
    ("name", "kwargs", "blocks"),
    [
        ("mobilenetv2", {}, 17),
        ("mobilenetv2_reduced", {}, 10),
        ("mobilenetv2", {"width_mult": 0.5, "strides": "imagenet"}, 17),
    ],
)
def test_every_block_matches_the_formula(name, kwargs, blocks):
    model = create_model(name, **kwargs)
    cost = separable_cost(model)
    assert len(cost["blocks"]) == blocks
    for b in cost["blocks"]:
        n, k = b["out_channels"], b["kernel"]
        assert k == 3
        assert b["ratio"] == pytest.approx(1 / n + 1 / 9, rel=1e-12)
        assert math.isclose(b["ratio"], b["formula"], rel_tol=1e-12)
        assert b["exact"]
        h, w = b["out_hw"]
        # The counted numbers are the textbook ones (D_K^2 M HW, M N HW, D_K^2 M N HW).
        assert b["depthwise_macs"] == 9 * b["expanded"] * h * w
        assert b["pointwise_macs"] == b["expanded"] * n * h * w
        assert b["standard_macs"] == 9 * b["expanded"] * n * h * w
    t = cost["totals"]
    assert t["all_exact"]
    assert t["model_macs"] == count_macs(model)
    assert t["separable_macs"] == t["depthwise_macs"] + t["pointwise_macs"]
    assert t["model_macs_if_standard"] > t["model_macs"]


def test_table_names_blocks_and_totals():
    text = format_cost(separable_cost("mobilenetv2_reduced"))
    assert "blocks.9" in text and "960->320" in text and "exact" in text
    assert "every block agrees exactly" in text and "0.112" in text


def test_model_without_depthwise_convs_has_no_blocks():
    assert separable_cost("lenet5")["blocks"] == []
