"""A backend-neutral ``Predictor``: uint8 images in, class probabilities out.

    predictor = Predictor.load("runs/mnv2r/export/model.onnx")   # or a run dir, a .pt, a zoo name
    x = np.stack([load_image("cat.png", predictor.image_size)])   # (1, 3, H, W) uint8
    probs = predictor.predict(x)                                   # (1, classes) float32
    predictor.top_k(probs, 5)                                      # [[("cat", 0.87), ...]]

Thread safety: ``Predictor.predict`` may be called from many threads at once (the serving
engineer's use). It keeps no per-call state on the object; ONNX Runtime's
``InferenceSession.run`` is documented thread-safe; the torch backend runs an eval-mode
module under ``inference_mode`` (no buffers are updated). Thread counts are set once, when
the predictor is loaded (torch's is process-wide).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench import rundir
from cnnbench.inference.errors import ModelLoadError
from cnnbench.inference.runtime import normalize, ort_session, softmax
from cnnbench.inference.sidecar import ONNX_FILES, export_dir, model_facts, read_sidecar
from cnnbench.rundir import RunDir

__all__ = ["BACKENDS", "Predictor", "load_trained"]

BACKENDS = ("auto", "onnxruntime", "torch")


def load_trained(source: RunDir | str | Path, which: str = "best") -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, checkpoint dict) of a run's ``which`` checkpoint (a zoo model's is
    checked against its card first) or of a ``.pt`` file; ``ModelLoadError`` if unreadable."""
    from cnnbench.train import CheckpointError

    try:
        if isinstance(source, RunDir):
            return source.load_model(which)
        return rundir.load_model_from(source, which)
    except CheckpointError as e:
        raise ModelLoadError(str(e)) from e


class Predictor:
    """A model ready to classify uint8 images, on ONNX Runtime or PyTorch (CPU).

    Attributes: ``backend`` ("onnxruntime" or "torch"), ``classes``, ``input_size``
    [C, H, W], ``image_size`` (H, W), ``mean``, ``std``, ``meta`` (the sidecar or checkpoint
    facts), ``source``. ``predict`` is thread-safe (see the module docstring).
    """

    def __init__(self, backend: str, runner: Any, meta: dict[str, Any], source: str) -> None:
        self.backend = backend
        self._runner = runner
        self.meta = meta
        self.source = source
        self.classes: list[str] = list(meta["classes"])
        self.input_size: list[int] = list(meta["input_size"])
        self.image_size: tuple[int, int] = (self.input_size[1], self.input_size[2])
        self.mean: tuple[float, ...] = tuple(meta["mean"])
        self.std: tuple[float, ...] = tuple(meta["std"])

    @classmethod
    def load(
        cls,
        source: RunDir | str | os.PathLike[str],
        backend: str = "auto",
        threads: int | None = None,
    ) -> Predictor:
        """From an exported ``.onnx`` file (its ``.json`` sidecar next to it), a ``.pt``
        checkpoint, or a run (a ``RunDir``, its folder, or a zoo name: ``rundir.resolve``).

        ``backend="auto"``: ONNX Runtime for an .onnx file, PyTorch for a run or checkpoint.
        A run with ``backend="onnxruntime"`` uses ``<run>/export/model.onnx``.
        ``threads``: intra-op threads (None: the library's default, all cores).
        """
        if backend not in BACKENDS:
            raise ModelLoadError(f"backend must be auto, onnxruntime or torch, got {backend!r}")
        if isinstance(source, RunDir):
            return cls._load_run(source, backend, threads)
        path = Path(source)
        if path.is_dir():
            return cls._load_run(RunDir(path), backend, threads)
        if path.suffix == ".onnx":
            if backend == "torch":
                raise ModelLoadError(
                    f"{path} is an ONNX file: use --backend onnxruntime or a run dir"
                )
            return cls._load_onnx(path, threads)
        if path.suffix == ".pt":
            if backend == "onnxruntime":
                raise ModelLoadError(
                    f"{path}: expected a run directory, a .pt checkpoint or an .onnx file"
                )
            return cls._load_torch(path, threads)
        return cls._load_run(rundir.resolve(source), backend, threads)

    @classmethod
    def _load_run(cls, run: RunDir, backend: str, threads: int | None) -> Predictor:
        if backend != "onnxruntime":
            return cls._load_torch(run, threads)
        onnx_path = export_dir(run) / ONNX_FILES["fp32"]
        if not onnx_path.is_file():
            raise ModelLoadError(
                f"{onnx_path} does not exist: run `cnnbench export {run.path}` first, "
                "or use --backend torch"
            )
        return cls._load_onnx(onnx_path, threads)

    @classmethod
    def _load_onnx(cls, path: Path, threads: int | None) -> Predictor:
        if not path.is_file():
            raise ModelLoadError(f"no such model file: {path}")
        meta = read_sidecar(path)
        try:
            session = ort_session(path, threads)
        except Exception as e:  # ORT raises its own types for a bad file
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({e})") from None
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return session.run(None, {name: x})[0]

        return cls("onnxruntime", run, meta, str(path))

    @classmethod
    def _load_torch(cls, source: RunDir | Path, threads: int | None) -> Predictor:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        model, ckpt = load_trained(source)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).float().numpy()

        where = source.path if isinstance(source, RunDir) else source
        return cls("torch", run, model_facts(ckpt), str(where))

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, H, W) -> normalised float32, as in training."""
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.dtype != np.uint8 or x.ndim != 4 or list(x.shape[1:]) != self.input_size:
            want = ", ".join(map(str, self.input_size))
            raise ValueError(f"expected uint8 (N, {want}), got {x.dtype} {tuple(x.shape)}")
        return normalize(x, self.mean, self.std)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw class scores (N, classes) of uint8 images."""
        return np.asarray(self._runner(self.preprocess(images)), dtype=np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes), float32, of a uint8 (N, 3, H, W) batch."""
        return softmax(self.logits(images))

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely (label, probability) pairs of each row, most likely first."""
        k = max(1, min(k, len(self.classes)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            [(self.classes[j], float(p[j])) for j in row]
            for p, row in zip(probs, order, strict=True)
        ]
