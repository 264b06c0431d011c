"""The served model: a run directory loaded once behind one thread-safe ``predict``.

    model = load_served_model("runs/lenet", backend="onnxruntime", threads=1)
    x = model.preprocess(png_bytes)          # (3, H, W) uint8; ImageError with an HTTP status
    probs = model.predict(x[None])           # (N, classes) float32, rows sum to 1

Decoding and prediction are ``cnnbench.inference``'s ``decode_upload`` and ``Predictor``
(the same code as ``cnnbench predict``, so the service sees an image exactly as training
and the CLI do): the accepted formats are PNG, JPEG, WebP and BMP, and each bad upload gets
a status read from the header before decoding (415 not an image or another format, 413
over ``max_pixels``, 422 a corrupt header or when decoding then fails).

Memory. ``max_pixels`` (default ``limits.DEFAULT_MAX_PIXELS``, 4.2 MP) bounds one decode; at most
``large_decodes`` images over ``LARGE_DECODE_PIXELS`` decode at once (the others wait), so
the decoding memory of the whole service is bounded by its settings, whatever arrives:
about ``large_decodes * max_pixels * 12`` bytes (RGBA decoded, flattened, converted) plus
``workers * LARGE_DECODE_PIXELS * 12`` for the small ones.

Backends: ``onnxruntime`` runs ``<run>/export/model.onnx`` with its JSON sidecar (made by
``cnnbench export`` and reused) and imports no torch: labels, input size, normalisation,
model and dataset all come from the sidecar. A run without an export is exported first in
a child process (``cnnbench.serve.exporter``), into ``<run>/export`` when the dataset is
there for the accuracy check, otherwise into a temporary folder that is deleted as soon as
ONNX Runtime has loaded the file. ``torch`` runs ``best.pt``. ``predict`` is thread-safe.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.inference import ImageError, ModelLoadError, check_header, decode_upload
from cnnbench.inference.image import ACCEPTED_FORMATS
from cnnbench.rundir import RunDir
from cnnbench.scratch import scratch_dir
from cnnbench.serve import memory
from cnnbench.serve.limits import DEFAULT_LARGE_DECODES, DEFAULT_MAX_PIXELS, LARGE_DECODE_PIXELS

__all__ = [
    "ACCEPTED_FORMATS",
    "BACKENDS",
    "DEFAULT_LARGE_DECODES",
    "DEFAULT_MAX_PIXELS",
    "LARGE_DECODE_PIXELS",
    "ImageError",
    "ModelLoadError",
    "ServedModel",
    "check_header",
    "load_served_model",
]

log = logging.getLogger("cnnbench.serve")

BACKENDS = ("onnxruntime", "torch")


@dataclass
class ServedModel:
    """One model in memory (a ``cnnbench.inference.Predictor``) and facts about it.

    ``file`` and ``sha256`` name the model file that is served (what ``/model`` shows);
    ``source`` is where it was loaded from, for the server's own log only.
    """

    name: str
    model: str
    dataset: str
    classes: list[str]
    input_size: tuple[int, int, int]
    backend: str
    source: str
    predictor: Any
    accuracy: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    file: str = ""
    sha256: str | None = None
    large_decodes: int = DEFAULT_LARGE_DECODES
    _slots: threading.BoundedSemaphore = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(max(1, self.large_decodes))

    def preprocess(self, data: bytes) -> np.ndarray:
        """Image bytes -> (3, H, W) uint8 at the model's size; ``ImageError`` for bad uploads."""
        return decode_upload(
            data, self.input_size[1:], max_pixels=self.max_pixels, large_decode=self._gate
        )

    def _gate(self, pixels: int) -> AbstractContextManager[Any]:
        return self._large_slot() if pixels > LARGE_DECODE_PIXELS else nullcontext()

    @contextmanager
    def _large_slot(self) -> Iterator[None]:
        with self._slots:
            yield
        memory.trim()  # the heap pages the decode's smaller buffers used go back too

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) of a uint8 (N, 3, H, W) batch; thread-safe."""
        return self.predictor.predict(x)

    def info(self) -> dict[str, Any]:
        """What ``GET /model`` shows: names and a hash, never a path on the server."""
        return {
            "name": self.name,
            "model": self.model,
            "dataset": self.dataset,
            "accuracy": self.accuracy,
            "input_size": list(self.input_size),
            "labels": list(self.classes),
            "backend": self.backend,
            "file": self.file,
            "sha256": self.sha256,
        }


def load_served_model(
    run_dir: RunDir | str | Path,
    *,
    backend: str = "onnxruntime",
    threads: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    large_decodes: int = DEFAULT_LARGE_DECODES,
) -> ServedModel:
    """Load a run's best model for serving with ``backend`` (``threads``: intra-op threads)."""
    from cnnbench.bench.errors import BenchError
    from cnnbench.rundir import RunDirError

    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.path.is_dir():
        raise ModelLoadError(f"{run.path} is not a run directory")
    try:
        predictor, file, sha256 = _load_predictor(run, backend, threads)
    except (BenchError, RunDirError) as e:
        raise ModelLoadError(str(e)) from e
    summary = run.summary() or {}
    meta = predictor.meta
    served = ServedModel(
        name=summary.get("name") or run.path.name,
        model=meta.get("model") or summary.get("model") or "unknown",
        dataset=meta.get("dataset") or summary.get("dataset") or "unknown",
        classes=list(predictor.classes),
        input_size=tuple(predictor.input_size),
        backend=predictor.backend,
        source=str(run.path),
        predictor=predictor,
        accuracy=summary.get("test_acc"),
        max_pixels=max_pixels,
        file=file,
        sha256=sha256,
        large_decodes=large_decodes,
    )
    _warm_up(served)
    return served


def _load_predictor(run: RunDir, backend: str, threads: int) -> tuple[Any, str, str | None]:
    """(Predictor, served file name, its sha256)."""
    from cnnbench.inference import Predictor
    from cnnbench.zoo import sha256_of

    if backend == "torch":
        predictor = Predictor.load(run, backend="torch", threads=threads)
        best = run.checkpoint_path("best")
        return predictor, best.name, sha256_of(best)
    with _onnx_for(run) as path:
        predictor = Predictor.load(path, backend="onnxruntime", threads=threads)
        return predictor, path.name, predictor.meta.get("onnx_sha256") or sha256_of(path)


def _warm_up(model: ServedModel) -> None:
    """One decode and one prediction now, so the first request does not pay for the lazy
    initialisation of Pillow's plugins and the runtime (~300 ms on a busy 2-core machine)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buf, "PNG")
    model.predict(model.preprocess(buf.getvalue())[None])


_export_lock = threading.Lock()
SERVE_SCRATCH_PREFIX = "cnnbench-serve-"


@contextmanager
def _onnx_for(run: RunDir) -> Iterator[Path]:
    """``<run>/export/model.onnx`` (with its sidecar) while the caller loads it: the existing
    export, or one made now by ``cnnbench.serve.exporter`` in a child process. A temporary
    export lives in a ``cnnbench-serve-*`` folder that is removed when the caller is done (or,
    if this server is killed while it loads, by the next one)."""
    from cnnbench.inference.sidecar import ONNX_FILES, export_dir
    from cnnbench.serve.exporter import export_in_child

    path = export_dir(run) / ONNX_FILES["fp32"]
    with _export_lock:
        if path.is_file():  # its sidecar is checked when it is loaded
            _warn_if_stale(run, path)
            yield path
            return
        with scratch_dir(SERVE_SCRATCH_PREFIX) as tmp:
            yield export_in_child(run, tmp)


def _warn_if_stale(run: RunDir, onnx_path: Path) -> None:
    best = run.checkpoint_path("best")
    if best.is_file() and best.stat().st_mtime > onnx_path.stat().st_mtime:
        log.warning(
            "%s is older than %s; `cnnbench export --force` refreshes it", onnx_path, best.name
        )
