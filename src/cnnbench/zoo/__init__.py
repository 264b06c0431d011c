"""The model zoo: trained cnnbench models shipped inside the package, each with a card.

Every entry is a folder ``cnnbench/zoo/<name>/`` laid out as a run directory (see
``cnnbench.rundir``): ``best.pt`` (fp16 weights and what rebuilds the model, no optimizer
state), ``config.yaml``, ``summary.json``, ``bench.json`` and ``zoo.json``, the card: how it
was trained (recipe, exact command, epochs, time on which machine, commit), its
validation-selected test accuracy with its standard error, parameters, MACs, batch-1 latency
and the sha256 of ``best.pt``. So every command that takes a run directory takes a zoo name.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any


def root() -> Path:
    return Path(str(resources.files("cnnbench") / "zoo"))


def names() -> list[str]:
    """Names of the shipped models (``<model>-<dataset>``), sorted."""
    base = root()
    return sorted(p.name for p in base.iterdir() if (p / "zoo.json").is_file())


def find(name: str) -> Path | None:
    """The folder of zoo model ``name`` (``zoo:`` prefix allowed), or None."""
    name = name.removeprefix("zoo:")
    path = root() / name
    return path if (path / "zoo.json").is_file() and "/" not in name else None


def cards() -> list[dict[str, Any]]:
    """Every shipped card, sorted by name."""
    return [json.loads((root() / n / "zoo.json").read_text()) for n in names()]
