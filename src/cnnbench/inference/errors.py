"""The two errors of ``cnnbench.inference``: a bad image, and a model that cannot be loaded."""

from __future__ import annotations

from cnnbench.bench.errors import BenchError


class ImageError(ValueError):
    """A file or upload that cannot be used as an image; the message says why, in one line.

    ``status`` and ``error`` are what an HTTP service answers with: 413 ``image_too_large``
    or ``too_large``, 415 ``not_an_image``, 422 ``corrupt_image`` or ``unreadable_file``;
    ``detail`` is the message.
    """

    def __init__(self, detail: str, *, status: int = 422, error: str = "corrupt_image") -> None:
        super().__init__(detail)
        self.detail, self.status, self.error = detail, status, error


class ModelLoadError(BenchError, RuntimeError):
    """A model that cannot be loaded for inference: a missing file or sidecar, an unreadable
    checkpoint, a failed export. A ``BenchError``, so the CLI prints it and exits with 2."""
