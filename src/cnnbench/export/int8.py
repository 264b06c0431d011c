"""Static int8 quantisation of an ONNX file, calibrated on real training images.

x, mean, std, about = calibration_data(ckpt, (3, 32, 32), 300)
quantize_int8("m.onnx", "m.int8.onnx", x, mean, std)   # QDQ, per-channel, MinMax
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.inference.runtime import normalize

__all__ = ["calibration_data", "calibration_images", "quantize_int8"]


class _Calibration:
    """``CalibrationDataReader`` over normalised uint8 images, ``batch`` images per read."""

    def __init__(
        self,
        x_uint8: np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        input_name: str,
        batch: int = 16,
    ) -> None:
        self._batches = [
            {input_name: normalize(x_uint8[i : i + batch], mean, std)}
            for i in range(0, len(x_uint8), batch)
        ]
        self._it = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calib_uint8: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
) -> dict[str, Any]:
    """Static int8 quantisation (QDQ, per-channel weights, MinMax calibration) of an ONNX file.

    ``calib_uint8``: real (N, C, H, W) uint8 training images (a few hundred). The model is
    first pre-processed (shape inference + graph optimisation) as ONNX Runtime recommends;
    if that step fails the original graph is quantised and the returned dict says so.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from cnnbench.export.onnx import check_single_file

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "format": "QDQ",
        "per_channel": True,
        "activations": "int8",
        "weights": "int8",
        "calibration": "MinMax",
        "calibration_images": len(calib_uint8),
    }
    fallback = _PerTensorFallback()
    with tempfile.TemporaryDirectory(prefix="cnnbench-quant-") as tmp, fallback:
        source = _preprocess(Path(fp32_path), Path(tmp) / "pre.onnx", info)
        input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
        quantize_static(
            str(source),
            str(out_path),
            _Calibration(calib_uint8, mean, std, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    check_single_file(out_path)
    info["per_tensor_weights"] = fallback.weights
    return info


class _PerTensorFallback(logging.Filter):
    """Collects, instead of printing, ONNX Runtime's "Axis 1 is out-of-range for weight ..."
    warnings: a 1-D weight (the scale of a BatchNorm that no convolution absorbed, as after
    FastNet's max-pools) cannot be quantised per channel on axis 1, and ORT quantises it per
    tensor, which is what we want. One line per such weight in every study log said nothing
    a user could act on; the names go to the returned info (``per_tensor_weights``)."""

    _PATTERN = re.compile(r"is out-of-range for weight '([^']+)'")

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        found = self._PATTERN.search(record.getMessage())
        if found:
            self.weights.append(found.group(1))
        return found is None

    def __enter__(self) -> _PerTensorFallback:
        logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeFilter(self)


def _preprocess(fp32_path: Path, pre: Path, info: dict[str, Any]) -> Path:
    """The graph to quantise: ``pre`` after ONNX Runtime's pre-processing, or, when that fails
    (not fatal), the plain ``fp32_path``; ``info`` records which."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
    except Exception as e:
        info["preprocessed"] = False
        info["preprocess_error"] = f"{type(e).__name__}: {e}"
        return fp32_path
    info["preprocessed"] = True
    return pre


def calibration_images(x_train: Any, y_train: Any, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training images, stratified by class and seeded, as a uint8 numpy array."""
    import torch

    from cnnbench.data import stratified_sample

    n = min(n, len(x_train))
    idx = stratified_sample(y_train, n, torch.Generator().manual_seed(seed))
    return x_train[idx].numpy()


def calibration_data(
    ckpt: dict[str, Any] | None,
    input_size: Sequence[int],
    n: int,
    data_dir: str | None = None,
) -> tuple[np.ndarray, Sequence[float], Sequence[float], str]:
    """(uint8 images, mean, std, description) to calibrate int8 with: ``n`` training images of
    the checkpoint's dataset (CIFAR-10 for an untrained model, ``ckpt=None``), or, without
    the data, random images, and the description says so.

    Only timing may use the random fallback (it does not depend on the calibration values);
    ``cnnbench export`` calibrates on the real data or fails.
    """
    from cnnbench.data import DataError
    from cnnbench.rundir import checkpoint_dataset

    ckpt = ckpt or {"config": {"dataset": "cifar10", "image_size": int(input_size[1])}}
    cfg = ckpt.get("config", {})
    dataset = ckpt.get("dataset") or cfg.get("dataset", "cifar10")
    try:
        ds = checkpoint_dataset(ckpt, data_dir)
    except DataError as e:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(n, *input_size), dtype=np.uint8)
        mean, std = ckpt.get("mean") or (0.5, 0.5, 0.5), ckpt.get("std") or (0.25, 0.25, 0.25)
        return x, mean, std, f"{n} random images (no real data: {e})"
    x = calibration_images(ds.x_train, ds.y_train, n)
    mean, std = ckpt.get("mean") or ds.mean_std()[0], ckpt.get("std") or ds.mean_std()[1]
    return x, mean, std, f"{len(x)} {dataset} training images"
