"""The error of ``cnnbench.export`` that a user can act on."""

from __future__ import annotations

from cnnbench.bench.errors import BenchError


class ExportError(BenchError):
    """An export that cannot start (not a run, files already there...); the CLI exits with 2."""
