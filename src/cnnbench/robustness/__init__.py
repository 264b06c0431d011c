"""How a model holds up to what a camera does to a frame: the CIFAR-10-C / CIFAR-100-C
protocol (Hendrycks & Dietterich, ICLR 2019), regenerated, seeded and cached.

    from cnnbench.robustness import measure_run
    report = measure_run("runs/quick/fastnet_small-sgd-lr0.75-s0")   # writes robustness.json
    report["mca"], report["relative_drop"], report["groups"]["noise"]["acc"]

``protocol`` holds the names and numbers (importable without numpy or torch),
``corruptions`` the 15 batched corruptions, ``cache`` the seeded generation and its on-disk
cache, ``measure`` the evaluation and ``robustness.json``, ``results`` reads it back (light: the
report, ``pick`` and the study use it), ``figures`` draws its two figures.
Exports are lazy (PEP 562): importing the package loads neither torch nor scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

from cnnbench.robustness.protocol import (
    CORRUPTIONS,
    DEFAULT_IMAGES,
    DEFAULT_SEED,
    GROUPS,
    IMPLEMENTATION,
    ROBUSTNESS,
    ROBUSTNESS_FIGURES,
    SEVERITIES,
)

_LAZY = {
    "corrupt": "cnnbench.robustness.corruptions",
    "corrupted": "cnnbench.robustness.cache",
    "RobustnessError": "cnnbench.robustness.measure",
    "card_summary": "cnnbench.robustness.results",
    "corrupted_accuracy": "cnnbench.robustness.results",
    "is_measured": "cnnbench.robustness.results",
    "measure": "cnnbench.robustness.measure",
    "measure_run": "cnnbench.robustness.measure",
    "read_robustness": "cnnbench.robustness.results",
    "summarise": "cnnbench.robustness.measure",
}

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_IMAGES",
    "DEFAULT_SEED",
    "GROUPS",
    "IMPLEMENTATION",
    "ROBUSTNESS",
    "ROBUSTNESS_FIGURES",
    "SEVERITIES",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
