"""FastAPI inference service for a trained run (issue 7): ``cnnbench serve runs/<name>``."""

from cnnbench.serve.app import create_app
from cnnbench.serve.engine import (
    BACKENDS,
    ImageError,
    ModelLoadError,
    ServedModel,
    check_header,
    load_served_model,
)
from cnnbench.serve.metrics import Metrics

__all__ = [
    "BACKENDS",
    "ImageError",
    "Metrics",
    "ModelLoadError",
    "ServedModel",
    "check_header",
    "create_app",
    "load_served_model",
]
