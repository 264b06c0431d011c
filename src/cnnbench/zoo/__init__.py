"""The model zoo: trained cnnbench models shipped inside the package, each with a card.

Every entry is a folder ``cnnbench/zoo/<name>/`` laid out as a run directory (see
``cnnbench.rundir``): ``best.pt`` (fp16 weights and what rebuilds the model, no optimizer
state), ``config.yaml``, ``summary.json``, ``bench.json`` and ``zoo.json``, the card: how it
was trained (recipe, exact command, epochs, time on which machine, commit), its
validation-selected test accuracy with its standard error, parameters, MACs, batch-1 latency
and the sha256 of ``best.pt``. So every command that takes a run directory takes a zoo name.
"""

from __future__ import annotations

import hashlib
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


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pretrained_checkpoint(model: str, dataset: str) -> dict[str, Any]:
    """The checkpoint dict of zoo model ``<model>-<dataset>``, after checking its sha256
    against the card; ValueError if there is no such entry or the file does not match.
    (``create_model(model, pretrained=dataset)`` builds the model from it.)"""
    import torch

    path = find(f"{model}-{dataset}")
    if path is None:
        raise ValueError(f"no pretrained {model!r} for {dataset!r} in the zoo "
                         f"(shipped: {', '.join(names()) or 'none'})")  # fmt: skip
    card = json.loads((path / "zoo.json").read_text())
    weights = path / "best.pt"
    if sha256_of(weights) != card.get("sha256"):
        raise ValueError(f"{weights}: sha256 does not match its card; the weights were changed "
                         "or damaged: reinstall cnnbench")  # fmt: skip
    return torch.load(weights, map_location="cpu", weights_only=True)
