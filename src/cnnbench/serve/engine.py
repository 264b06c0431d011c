"""The served model: a run directory loaded once behind one thread-safe ``predict``.

    model = load_served_model("runs/lenet", backend="onnxruntime", threads=1)
    x = model.preprocess(png_bytes)          # (3, H, W) uint8; ImageError with an HTTP status
    probs = model.predict(x[None])           # (N, classes) float32, rows sum to 1

Decoding and prediction are ``cnnbench.bench.predict``'s ``load_image`` and ``Predictor``
(the same code as ``cnnbench predict``, so the service sees an image exactly as training
and the CLI do). This module adds what HTTP needs on top: the accepted formats (PNG, JPEG,
WebP, BMP), and a status for each bad upload, read from the header before decoding (415 not
an image or another format, 413 over the pixel limit, 422 when decoding then fails).

Backends: ``onnxruntime`` runs ``<run>/export/model.onnx`` with its JSON sidecar (made by
``cnnbench export`` and reused; exported on the fly with ``export_run`` if absent) and
``torch`` runs ``best.pt``. ``Predictor.predict`` is thread-safe for both.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("cnnbench.serve")

BACKENDS = ("onnxruntime", "torch")
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
# Decoded pixels above which an upload is refused before decoding: a 50 MP RGB image is
# 150 MB in memory; a crafted 100000 x 100000 PNG header would ask for 30 GB.
DEFAULT_MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """An upload that is not a usable image; ``status`` is the HTTP code to answer with."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


class ModelLoadError(RuntimeError):
    """A run directory that cannot be served (missing, no checkpoint, failed export)."""


def check_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """The format of an upload, from its header alone; ``ImageError`` 415 / 413 / 422 if bad."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(415, "not_an_image", "the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as img:
                fmt, (width, height) = img.format, img.size
    except Image.DecompressionBombError as e:
        raise ImageError(413, "image_too_large", str(e)) from None
    except UnidentifiedImageError:
        raise ImageError(415, "not_an_image", _unidentified_detail(data)) from None
    except Exception as e:  # a header that parses as a format but is malformed
        raise ImageError(422, "corrupt_image", f"cannot read the image header ({e})") from None
    if width * height > max_pixels:
        raise ImageError(
            413, "image_too_large",
            f"{width}x{height} pixels is more than the limit of {max_pixels:,} pixels",
        )  # fmt: skip
    return fmt


def _unidentified_detail(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as other:
            kind = other.format
    except Exception:
        kind = None
    accepted = ", ".join(ACCEPTED_FORMATS)
    if kind:
        return f"{kind} images are not accepted; send one of {accepted}"
    return f"the upload is not an image this server reads ({accepted})"


@dataclass
class ServedModel:
    """One model in memory (a ``cnnbench.bench.predict.Predictor``) and facts about it."""

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
        from cnnbench.bench.predict import ImageError as DecodeError
        from cnnbench.bench.predict import load_image

        fmt = check_header(data, self.max_pixels)
        try:
            return load_image(data, self.input_size[1:], max_pixels=self.max_pixels,
                              max_bytes=max(len(data), 1))  # fmt: skip
        except DecodeError as e:
            raise ImageError(422, "corrupt_image", f"cannot decode the {fmt} image: {e}") from None

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
    run_dir: str | Path,
    *,
    backend: str = "onnxruntime",
    threads: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ServedModel:
    """Load a run's best model for serving with ``backend`` (``threads``: intra-op threads)."""
    from cnnbench.bench.errors import BenchError
    from cnnbench.bench.predict import Predictor
    from cnnbench.train import CheckpointError, load_checkpoint

    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    run = Path(run_dir)
    if not run.is_dir():
        raise ModelLoadError(f"{run} is not a run directory")
    try:
        if backend == "torch":
            predictor = Predictor.load(run, backend="torch", threads=threads)
        else:
            predictor = Predictor.load(_onnx_for(run), backend="onnxruntime", threads=threads)
        ckpt = load_checkpoint(run / "best.pt")
    except (BenchError, CheckpointError) as e:
        raise ModelLoadError(str(e)) from e
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    served = ServedModel(
        name=summary.get("name") or run.name,
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


def _onnx_for(run: Path) -> Path:
    """``<run>/export/model.onnx`` (with its sidecar), exported now if it does not exist.

    ``export_run`` checks the exported model's accuracy against PyTorch on 500 test images,
    which needs the run's dataset; without it the model is exported, with a sidecar, to a
    temporary folder for this process only (a later ``cnnbench export`` writes the real one).
    """
    from cnnbench.bench.errors import BenchError
    from cnnbench.bench.export import export_onnx, export_run
    from cnnbench.data import DataError
    from cnnbench.train import CheckpointError, model_from_checkpoint

    path = run / "export" / "model.onnx"
    with _export_lock:
        if path.is_file():
            if (run / "best.pt").is_file() and (
                run / "best.pt"
            ).stat().st_mtime > path.stat().st_mtime:
                log.warning(
                    "%s is older than best.pt; `cnnbench export --force` refreshes it", path
                )
            return path
        log.info("no ONNX export in %s: exporting it (with an accuracy check) ...", path.parent)
        try:
            export_run(run, test_subset=500, log=log.info)
            return path
        except DataError as e:
            log.warning("no accuracy check possible (%s): exporting to a temporary folder", e)
        try:
            model, ckpt = model_from_checkpoint(run / "best.pt")
            tmp = Path(tempfile.mkdtemp(prefix="cnnbench-serve-")) / "model.onnx"
            size = int(ckpt.get("config", {}).get("image_size", 32))
            export_onnx(model, tmp, input_size=(3, size, size))
            meta = {"classes": ckpt["classes"], "input_size": [3, size, size],
                    "mean": ckpt["mean"], "std": ckpt["std"], "model": ckpt["model_spec"]["name"],
                    "dataset": ckpt.get("config", {}).get("dataset")}  # fmt: skip
            tmp.with_suffix(".json").write_text(json.dumps(meta))
            return tmp
        except (BenchError, CheckpointError):
            raise
        except Exception as e:
            raise ModelLoadError(f"ONNX export of {run} failed: {e}") from e
