"""The run directory: the one place that names a run's files and reads them.

A run directory holds::

    config.yaml     the resolved RunConfig (what `cnnbench train --config` reads back)
    metrics.jsonl   one JSON line per epoch
    last.pt         the latest checkpoint (resume from here)
    best.pt         the checkpoint chosen on validation (the test uses it)
    summary.json    written last, atomically: the run is complete once it says so
    bench.json      batch-1 latency figures (cnnbench bench / the study)

Writers are the trainer (the first five) and the benchmark; everything else only reads,
through ``RunDir``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LAST = "last.pt"
BEST = "best.pt"
SUMMARY = "summary.json"
BENCH = "bench.json"


class RunDir:
    """A run directory (which may not exist yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # --- file names
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def bench_path(self) -> Path:
        return self.path / BENCH

    def checkpoint_path(self, which: str = "best") -> Path:
        """``best`` or ``last``."""
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        return self.path / (BEST if which == "best" else LAST)

    # --- state
    def exists(self) -> bool:
        """True if the folder exists and holds anything."""
        return self.path.is_dir() and any(self.path.iterdir())

    def summary(self) -> dict[str, Any] | None:
        """The run's summary.json, or None if the run has not finished."""
        return _read_json(self.summary_path)

    def is_complete(self) -> bool:
        """A run is complete once its summary says so (written last, atomically)."""
        summary = self.summary()
        return bool(summary) and summary.get("status") == "complete"

    def config(self) -> dict[str, Any] | None:
        """The resolved config as a dict, or None if there is none (yet)."""
        import yaml

        if not self.config_path.is_file():
            return None
        try:
            data = yaml.safe_load(self.config_path.read_text())
        except (OSError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None

    def metrics(self) -> list[dict[str, Any]]:
        """Per-epoch rows of metrics.jsonl (a torn last line is skipped)."""
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def bench(self) -> dict[str, Any] | None:
        """bench.json, or None."""
        return _read_json(self.bench_path)

    def load_checkpoint(self, which: str = "best", map_location: Any = "cpu") -> dict[str, Any]:
        """The checkpoint dict, loaded with ``weights_only=True`` (see train.checkpoint)."""
        from cnnbench.train.checkpoint import load_checkpoint

        return load_checkpoint(self.checkpoint_path(which), map_location=map_location)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The summary.json of ``run_dir``, or None if the run has not finished."""
    return RunDir(run_dir).summary()


def is_complete(run_dir: str | Path) -> bool:
    """True once ``run_dir``'s summary says the run is complete."""
    return RunDir(run_dir).is_complete()
