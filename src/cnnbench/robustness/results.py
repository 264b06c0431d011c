"""Reading a measurement back: a run's ``robustness.json``, or a zoo card's summary of one.

Light on purpose (no numpy, no torch): the report, ``pick`` and the study read these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnbench.robustness.protocol import (
    DEFAULT_IMAGES,
    DEFAULT_SEED,
    IMPLEMENTATION,
    ROBUSTNESS,
    check_selection,
)
from cnnbench.rundir import RunDir

__all__ = ["card_summary", "corrupted_accuracy", "is_measured", "read_robustness"]


def read_robustness(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's robustness figures: its robustness.json, else (a zoo entry) its card's
    ``robustness`` summary; None when never measured. Both carry ``mca`` and ``images``."""
    path = Path(run_dir) / ROBUSTNESS
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("mca"), int | float):
            return data
    card = RunDir(run_dir).zoo_card() or {}
    summary = card.get("robustness")
    if isinstance(summary, dict) and isinstance(summary.get("mca"), int | float):
        return summary
    return None


def corrupted_accuracy(run_dir: str | Path) -> float | None:
    """The run's mean corruption accuracy (mCA, a fraction), or None if never measured."""
    data = read_robustness(run_dir)
    return float(data["mca"]) if data else None


def is_measured(
    run_dir: str | Path, *, images: int | None = DEFAULT_IMAGES, seed: int = DEFAULT_SEED
) -> bool:
    """True when the run has a robustness.json of this implementation, measured on the same
    protocol (every corruption and severity, the same image count and seed): what a study
    checks before measuring a run again."""
    data = read_robustness(run_dir)
    if not data or data.get("implementation") != IMPLEMENTATION or data.get("seed") != seed:
        return False
    every = check_selection(None, None)
    if (data.get("corruptions"), data.get("severities")) != (list(every[0]), list(every[1])):
        return False
    total = data.get("test_images")
    if images is None or (total and images >= total):
        return bool(data.get("full"))
    return data.get("images") == images


def card_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a zoo card carries of a measurement (``read_robustness`` reads it back)."""
    keys = ("implementation", "images", "test_images", "full", "seed", "corruptions",
            "severities", "clean_acc", "clean_acc_se", "mca", "mca_se", "relative_drop",
            "relative_drop_se", "drop", "drop_se")  # fmt: skip
    out = {k: report.get(k) for k in keys}
    out["groups"] = {g: v["acc"] for g, v in (report.get("groups") or {}).items()}
    out["timing"] = report.get("timing")
    out["load_average"] = (report.get("environment") or {}).get("loadavg_start")
    return out
