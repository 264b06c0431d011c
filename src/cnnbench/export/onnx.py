"""ONNX export of a model as one self-contained file.

    export_onnx(model, "m.onnx", input_size=(3, 32, 32))   # fp32, opset 17, dynamic batch

The exporter is torch's TorchScript-based one (``dynamo=False``): in torch 2.14 it is
deprecated but supported, takes seconds where the dynamo exporter takes ~40 s for
MobileNetV2, folds BatchNorm into the convolutions in eval mode, and writes the weights
inside the file. If it is ever removed, the dynamo exporter is used with
``external_data=False``. Either way ``check_single_file`` proves no weight lives outside.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnbench.inference.sidecar import INPUT_NAME, OUTPUT_NAME

__all__ = ["DEFAULT_OPSET", "check_single_file", "export_onnx"]

DEFAULT_OPSET = 17


def export_onnx(
    model: Any,
    path: str | Path,
    *,
    input_size: Sequence[int] = (3, 32, 32),
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` (eval mode, CPU, fp32) as one self-contained ONNX file; batch is dynamic.

    Input ``input`` (N, C, H, W) float32, already normalised; output ``logits`` (N, classes).
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_size)
    try:
        _export_legacy(model, x, path, opset)
    except (TypeError, NotImplementedError, RuntimeError) as legacy_error:
        # The legacy exporter is gone or failed: the dynamo exporter, weights embedded.
        try:
            _export_dynamo(model, x, path, opset)
        except Exception as e:
            raise RuntimeError(f"ONNX export failed ({legacy_error}; dynamo: {e})") from e
    finally:
        model.train(was_training)
    check_single_file(path)
    return path


def _export_legacy(model: Any, x: Any, path: Path, opset: int) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def _export_dynamo(model: Any, x: Any, path: Path, opset: int) -> None:
    import torch

    program = torch.onnx.export(
        model,
        (x,),
        dynamo=True,
        opset_version=max(opset, 18),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    program.save(str(path), external_data=False)


def check_single_file(path: str | Path) -> None:
    """Raise ValueError if any initializer of the ONNX file lives in external data."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    for init in m.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"{path}: initializer {init.name!r} is stored outside the file")
