"""Classify image files: safe decoding (`load_image`) and a backend-neutral `Predictor`.

    predictor = Predictor.load("runs/mnv2r/export/model.onnx")   # or a run dir (torch)
    x = np.stack([load_image("cat.png", predictor.image_size)])   # (1, 3, H, W) uint8
    probs = predictor.predict(x)                                   # (1, classes) float32
    predictor.top_k(probs, 5)                                      # [[("cat", 0.87), ...]]

Decoding matches how ``cnnbench.data`` reads image folders for training: Pillow, RGB,
transparency flattened onto white, resized to the model's input size with bilinear
filtering, aspect ratio not kept (a CIFAR model sees 32x32 exactly as in training).
Files are checked before they are decoded: a byte limit, then a pixel limit read from the
header, so a decompression bomb is refused without allocating it.

Thread safety: ``load_image`` and ``Predictor.predict`` may be called from many threads at
once (the serving engineer's use). ``predict`` keeps no per-call state on the object; ONNX
Runtime's ``InferenceSession.run`` is documented thread-safe; the torch backend runs an
eval-mode module under ``inference_mode`` (no buffers are updated). Thread counts are set
once, when the predictor is loaded (torch's is process-wide).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.bench.errors import BenchError

__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "ImageError", "Predictor", "load_image"]

MAX_PIXELS = 50_000_000  # 50 MP: larger images are refused before decoding
MAX_FILE_BYTES = 100 * 1024 * 1024  # 100 MiB
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


class ImageError(ValueError):
    """A file that cannot be used as an image; the message says why, in one line."""


def _flatten_to_rgb(im: Any) -> Any:
    """RGB Pillow image of any mode: alpha onto white, 16-bit and float scaled to 8 bits."""
    from PIL import Image

    if im.mode in _SIXTEEN_BIT or im.mode == "I":
        a = np.asarray(im).astype(np.float64)
        # "I" (32-bit) is how Pillow opens some 16-bit files: scale only if values exceed 8 bits.
        scale = 257.0 if (im.mode in _SIXTEEN_BIT or (a.size and a.max() > 255)) else 1.0
        im = Image.fromarray(np.clip(a / scale + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = a * 255.0 if a.size and a.max() <= 1.0 else a  # floats in [0, 1] or [0, 255]
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        im.mode == "P" and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im.alpha_composite(rgba)
    return im.convert("RGB")


def load_image(
    source: bytes | str | os.PathLike[str],
    size: int | tuple[int, int],
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> np.ndarray:
    """Decode an image file (path or bytes) into a (3, H, W) uint8 array of ``size``.

    Raises ``ImageError`` (one-line reason) for a missing, unreadable, empty, oversized,
    non-image, truncated or corrupt file, and for images over ``max_pixels``. Multi-frame
    files (GIF, TIFF) use their first frame.
    """
    from PIL import Image, UnidentifiedImageError

    h, w = (size, size) if isinstance(size, int) else size
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        n_bytes = len(data)
        if n_bytes > max_bytes:
            raise ImageError(
                f"{n_bytes / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB limit"
            )
        fp: Any = io.BytesIO(data)
    else:
        path = Path(source)
        try:
            if path.is_dir():
                raise ImageError("is a folder, not an image file")
            n_bytes = path.stat().st_size
        except FileNotFoundError:
            raise ImageError("no such file") from None
        except OSError as e:
            raise ImageError(f"cannot read file ({e.strerror or e})") from None
        if n_bytes > max_bytes:
            raise ImageError(
                f"{n_bytes / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB limit"
            )
        fp = path
    if n_bytes == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with Image.open(fp) as im:  # reads the header only
            width, height = im.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{width} x {height} = {width * height / 1e6:.0f} MP is over the "
                    f"{max_pixels / 1e6:.0f} MP limit"
                )
            if width == 0 or height == 0:
                raise ImageError(f"image has no pixels ({width} x {height})")
            im.draft("RGB", (w, h))  # JPEG: decode at a reduced scale when possible
            im.load()
            rgb = _flatten_to_rgb(im)
            if rgb.size != (w, h):
                rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"refused as a decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image file Pillow can read") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncated or corrupt data as OSError / SyntaxError / ValueError.
        raise ImageError(f"corrupt or truncated image data ({e})") from None


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


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
        self._mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self._std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)

    @classmethod
    def load(
        cls, source: str | os.PathLike[str], backend: str = "auto", threads: int | None = None
    ) -> Predictor:
        """From an exported ``.onnx`` file (its ``.json`` sidecar next to it) or a run dir.

        ``backend="auto"``: ONNX Runtime for an .onnx file, PyTorch for a run directory.
        A run directory with ``backend="onnxruntime"`` uses ``<run>/export/model.onnx``.
        ``threads``: intra-op threads (None: the library's default, all cores).
        """
        path = Path(source)
        if backend not in ("auto", "onnxruntime", "torch"):
            raise BenchError(f"backend must be auto, onnxruntime or torch, got {backend!r}")
        if path.is_dir():
            if backend == "onnxruntime":
                onnx_path = path / "export" / "model.onnx"
                if not onnx_path.is_file():
                    raise BenchError(f"{onnx_path} does not exist: run `cnnbench export {path}` "
                                     "first, or use --backend torch")  # fmt: skip
                return cls._load_onnx(onnx_path, threads)
            return cls._load_torch(path, threads)
        if path.suffix == ".onnx":
            if backend == "torch":
                raise BenchError(f"{path} is an ONNX file: use --backend onnxruntime or a run dir")
            return cls._load_onnx(path, threads)
        if path.suffix == ".pt" and backend != "onnxruntime":
            return cls._load_torch(path, threads)
        raise BenchError(f"{path}: expected a run directory, a .pt checkpoint or an .onnx file")

    @classmethod
    def _load_onnx(cls, path: Path, threads: int | None) -> Predictor:
        from cnnbench.bench.export import ort_session

        if not path.is_file():
            raise BenchError(f"no such model file: {path}")
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise BenchError(f"{sidecar} is missing: it holds the labels, input size and "
                             "normalisation (`cnnbench export` writes it)")  # fmt: skip
        try:
            meta = json.loads(sidecar.read_text())
            _ = meta["classes"], meta["input_size"], meta["mean"], meta["std"]
        except (ValueError, KeyError) as e:
            raise BenchError(f"{sidecar}: not a cnnbench export sidecar ({e})") from None
        try:
            session = ort_session(path, threads)
        except Exception as e:  # ORT raises its own types for a bad file
            raise BenchError(f"{path}: ONNX Runtime cannot load it ({e})") from None
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return session.run(None, {name: x})[0]

        return cls("onnxruntime", run, meta, str(path))

    @classmethod
    def _load_torch(cls, path: Path, threads: int | None) -> Predictor:
        import torch

        from cnnbench.train import CheckpointError, model_from_checkpoint

        if threads is not None:
            torch.set_num_threads(threads)
        try:
            model, ckpt = model_from_checkpoint(path)
        except CheckpointError as e:
            raise BenchError(str(e)) from e
        size = int(ckpt.get("config", {}).get("image_size", 32))
        meta = {"classes": ckpt["classes"], "input_size": [3, size, size], "mean": ckpt["mean"],
                "std": ckpt["std"], "model": ckpt["model_spec"]["name"],
                "dataset": ckpt.get("config", {}).get("dataset")}  # fmt: skip

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).float().numpy()

        return cls("torch", run, meta, str(path))

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, H, W) -> normalised float32, as in training."""
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.dtype != np.uint8 or x.ndim != 4 or list(x.shape[1:]) != self.input_size:
            raise ValueError(f"expected uint8 (N, {', '.join(map(str, self.input_size))}), "
                             f"got {x.dtype} {tuple(x.shape)}")  # fmt: skip
        return ((x.astype(np.float32) / np.float32(255.0)) - self._mean) / self._std

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw class scores (N, classes) of uint8 images."""
        return np.asarray(self._runner(self.preprocess(images)), dtype=np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes), float32, of a uint8 (N, 3, H, W) batch."""
        return _softmax(self.logits(images))

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely (label, probability) pairs of each row, most likely first."""
        k = max(1, min(k, len(self.classes)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            [(self.classes[j], float(p[j])) for j in row]
            for p, row in zip(probs, order, strict=True)
        ]


def expand_inputs(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files named on the command line; a folder gives its image files (sorted, recursive).

    A named file is kept whatever its extension (it is tried, and fails clearly if it is no
    image); in folders only known image extensions are taken.
    """
    from cnnbench.data.imagefolder import IMAGE_EXTENSIONS

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file()
                          and f.suffix.lower() in IMAGE_EXTENSIONS
                          and not f.name.startswith("."))  # fmt: skip
        else:
            out.append(p)
    return out
