"""The served model: a run directory loaded once behind one thread-safe ``predict``.

    model = load_served_model("runs/lenet", backend="onnxruntime", threads=1)
    x = model.preprocess(png_bytes)          # (3, H, W) uint8; ImageError with an HTTP status
    probs = model.predict(x[None])           # (N, classes) float32, rows sum to 1

Decoding and prediction are ``cnnbench.inference``'s ``decode_upload`` and ``Predictor``
(the same code as ``cnnbench predict``, so the service sees an image exactly as training
and the CLI do): the accepted formats are PNG, JPEG, WebP and BMP, and each bad upload gets
a status read from the header before decoding (415 not an image or another format, 413
over the pixel limit, 422 when decoding then fails).

Backends: ``onnxruntime`` runs ``<run>/export/model.onnx`` with its JSON sidecar (made by
``cnnbench export`` and reused; exported on the fly with ``export_run`` if absent) and
``torch`` runs ``best.pt``. ``Predictor.predict`` is thread-safe for both.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.inference import ImageError, ModelLoadError, check_header, decode_upload
from cnnbench.inference.image import ACCEPTED_FORMATS, MAX_PIXELS
from cnnbench.rundir import RunDir

__all__ = [
    "ACCEPTED_FORMATS",
    "BACKENDS",
    "DEFAULT_MAX_PIXELS",
    "ImageError",
    "ModelLoadError",
    "ServedModel",
    "check_header",
    "load_served_model",
]

log = logging.getLogger("cnnbench.serve")

BACKENDS = ("onnxruntime", "torch")
DEFAULT_MAX_PIXELS = MAX_PIXELS  # decoded pixels above which an upload is refused unread


@dataclass
class ServedModel:
    """One model in memory (a ``cnnbench.inference.Predictor``) and facts about it."""

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

    def preprocess(self, data: bytes) -> np.ndarray:
        """Image bytes -> (3, H, W) uint8 at the model's size; ``ImageError`` for bad uploads."""
        return decode_upload(data, self.input_size[1:], max_pixels=self.max_pixels)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) of a uint8 (N, 3, H, W) batch; thread-safe."""
        return self.predictor.predict(x)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "dataset": self.dataset,
            "accuracy": self.accuracy,
            "input_size": list(self.input_size),
            "labels": list(self.classes),
            "backend": self.backend,
            "source": self.source,
        }


def load_served_model(
    run_dir: RunDir | str | Path,
    *,
    backend: str = "onnxruntime",
    threads: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ServedModel:
    """Load a run's best model for serving with ``backend`` (``threads``: intra-op threads)."""
    from cnnbench.bench.errors import BenchError
    from cnnbench.inference import Predictor
    from cnnbench.rundir import RunDirError
    from cnnbench.train import CheckpointError

    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.path.is_dir():
        raise ModelLoadError(f"{run.path} is not a run directory")
    try:
        source = run if backend == "torch" else _onnx_for(run)
        predictor = Predictor.load(source, backend=backend, threads=threads)
        ckpt = run.load_checkpoint("best")
    except (BenchError, CheckpointError, RunDirError) as e:
        raise ModelLoadError(str(e)) from e
    summary = run.summary() or {}
    served = ServedModel(
        name=summary.get("name") or run.path.name,
        model=ckpt["model_spec"]["name"],
        dataset=ckpt.get("dataset") or ckpt.get("config", {}).get("dataset") or "unknown",
        classes=list(predictor.classes),
        input_size=tuple(predictor.input_size),
        backend=predictor.backend,
        source=predictor.source,
        predictor=predictor,
        accuracy=summary.get("test_acc"),
        max_pixels=max_pixels,
    )
    _warm_up(served)
    return served


def _warm_up(model: ServedModel) -> None:
    """One decode and one prediction now, so the first request does not pay for the lazy
    initialisation of Pillow's plugins and the runtime (~300 ms on a busy 2-core machine)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buf, "PNG")
    model.predict(model.preprocess(buf.getvalue())[None])


_export_lock = threading.Lock()


def _onnx_for(run: RunDir) -> Path:
    """``<run>/export/model.onnx`` (with its sidecar), exported now if it does not exist.

    ``export_run`` checks the exported model's accuracy against PyTorch on 500 test images,
    which needs the run's dataset; without it the model is exported, with a sidecar, to a
    temporary folder for this process only (a later ``cnnbench export`` writes the real one).
    A shipped zoo model is never written to: its export, if it has none, is temporary too.
    """
    from cnnbench.data import DataError
    from cnnbench.export import export_run
    from cnnbench.inference.sidecar import ONNX_FILES, export_dir

    path = export_dir(run) / ONNX_FILES["fp32"]
    with _export_lock:
        if path.is_file():
            _warn_if_stale(run, path)
            return path
        if run.zoo_card() is not None:
            return _export_temporary(run)
        log.info("no ONNX export in %s: exporting it (with an accuracy check) ...", path.parent)
        try:
            export_run(run, test_subset=500, log=log.info)
            return path
        except DataError as e:
            log.warning("no accuracy check possible (%s): exporting to a temporary folder", e)
        return _export_temporary(run)


def _warn_if_stale(run: RunDir, onnx_path: Path) -> None:
    best = run.checkpoint_path("best")
    if best.is_file() and best.stat().st_mtime > onnx_path.stat().st_mtime:
        log.warning(
            "%s is older than %s; `cnnbench export --force` refreshes it", onnx_path, best.name
        )


def _export_temporary(run: RunDir) -> Path:
    """The run's best model as ONNX + sidecar in a new temporary folder (no accuracy check)."""
    from cnnbench.bench.errors import BenchError
    from cnnbench.export import export_onnx
    from cnnbench.inference import checkpoint_input_size, load_trained, model_facts, write_sidecar
    from cnnbench.inference.sidecar import ONNX_FILES
    from cnnbench.rundir import RunDirError

    try:
        model, ckpt = load_trained(run)
        tmp = Path(tempfile.mkdtemp(prefix="cnnbench-serve-")) / ONNX_FILES["fp32"]
        export_onnx(model, tmp, input_size=checkpoint_input_size(ckpt))
        write_sidecar(tmp, model_facts(ckpt))
        return tmp
    except (BenchError, RunDirError):
        raise
    except Exception as e:
        raise ModelLoadError(f"ONNX export of {run.path} failed: {e}") from e
