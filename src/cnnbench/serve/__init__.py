"""FastAPI inference service for a trained run (issue 7): ``cnnbench serve runs/<name>``.

The names below load on first use (PEP 562), so ``cnnbench.serve.limits`` (the CLI's
defaults) and ``cnnbench.serve.exporter`` (the export child process) import no FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BACKENDS": "cnnbench.serve.engine",
    "ImageError": "cnnbench.serve.engine",
    "ModelLoadError": "cnnbench.serve.engine",
    "ServedModel": "cnnbench.serve.engine",
    "check_header": "cnnbench.serve.engine",
    "load_served_model": "cnnbench.serve.engine",
    "create_app": "cnnbench.serve.app",
    "Metrics": "cnnbench.serve.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
