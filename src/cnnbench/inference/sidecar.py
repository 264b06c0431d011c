"""The export folder of a run and the JSON sidecar next to each exported ONNX file.

    <run>/export/model.onnx        fp32, opset 17, dynamic batch (``cnnbench export``)
    <run>/export/model.json        its sidecar: labels, input size, mean/std, model, dataset...
    <run>/export/model.int8.onnx   static int8 (``--int8``), with ``model.int8.json``

``model_facts(ckpt)`` is what every sidecar starts with, and what a ``Predictor`` of a
checkpoint knows about its model; ``cnnbench export`` adds where the file came from and how
accurate it is (see ``cnnbench.export.run``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnbench.fileio import write_json_atomic
from cnnbench.inference.errors import ModelLoadError
from cnnbench.rundir import RunDir

__all__ = [
    "EXPORT_DIR",
    "INPUT_NAME",
    "ONNX_FILES",
    "OUTPUT_NAME",
    "SIDECAR_FORMAT",
    "checkpoint_input_size",
    "export_dir",
    "model_facts",
    "read_sidecar",
    "sidecar_path",
    "write_sidecar",
]

SIDECAR_FORMAT = 1
EXPORT_DIR = "export"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
INPUT_NAME, OUTPUT_NAME = "input", "logits"
PREPROCESS = "RGB, resize to input size (bilinear), x / 255, then (x - mean) / std per channel"
REQUIRED = ("classes", "input_size", "mean", "std")


def export_dir(run: RunDir) -> Path:
    """Where ``cnnbench export`` writes a run's ONNX files by default."""
    return run.path / EXPORT_DIR


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.json``, ``model.int8.onnx`` -> ``model.int8.json``."""
    return Path(onnx_path).with_suffix(".json")


def checkpoint_input_size(ckpt: dict[str, Any]) -> list[int]:
    """[C, H, W] a checkpoint's model was trained at (older checkpoints: from the config)."""
    if ckpt.get("input_size"):
        return [int(v) for v in ckpt["input_size"]]
    size = int(ckpt.get("config", {}).get("image_size", 32))
    return [3, size, size]


def model_facts(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What a deployed model needs from its checkpoint: labels, input, normalisation, model."""
    cfg = ckpt.get("config", {})
    return {
        "format": SIDECAR_FORMAT,
        "model": ckpt["model_spec"]["name"],
        "model_spec": ckpt["model_spec"],
        "dataset": ckpt.get("dataset") or cfg.get("dataset"),
        "classes": list(ckpt["classes"]),
        "input_size": checkpoint_input_size(ckpt),
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "preprocess": PREPROCESS,
        },
        "output": {"name": OUTPUT_NAME, "kind": "logits (softmax gives probabilities)"},
        "mean": list(ckpt["mean"]),
        "std": list(ckpt["std"]),
    }


def write_sidecar(onnx_path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``meta`` as the sidecar of ``onnx_path`` (atomically); its path."""
    path = sidecar_path(onnx_path)
    write_json_atomic(path, meta)
    return path


def read_sidecar(onnx_path: str | Path) -> dict[str, Any]:
    """The sidecar of ``onnx_path``; ``ModelLoadError`` if it is missing or not ours."""
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing: it holds the labels, input size and normalisation "
            "(`cnnbench export` writes it)"
        )
    try:
        meta = json.loads(path.read_text())
    except ValueError as e:
        raise ModelLoadError(f"{path}: not a cnnbench export sidecar ({e})") from None
    missing = [k for k in REQUIRED if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ModelLoadError(f"{path}: not a cnnbench export sidecar (no {', '.join(missing)})")
    return meta
