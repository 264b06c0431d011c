"""`cnnbench export` of a run: ONNX files, their sidecars, and their accuracy next to PyTorch.

    export_run("runs/mnv2r", int8=True)   # runs/mnv2r/export/model{,.int8}.{onnx,json}

Each exported model is evaluated with ONNX Runtime on the test split (all of it, or a seeded
subset) next to the PyTorch model on the same images, and the result goes into its sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.export.errors import ExportError
from cnnbench.export.int8 import calibration_images, quantize_int8
from cnnbench.export.onnx import DEFAULT_OPSET, export_onnx
from cnnbench.inference import load_trained, model_facts, ort_session, run_onnx
from cnnbench.inference.sidecar import ONNX_FILES, export_dir, sidecar_path, write_sidecar
from cnnbench.rundir import RunDir, checkpoint_dataset, sha256_of

__all__ = ["export_run"]


@dataclass
class _Reference:
    """The PyTorch model's answers on the test images every export is compared with."""

    x_test: np.ndarray  # uint8 (N, C, H, W)
    y: np.ndarray  # labels (N,)
    pred: np.ndarray  # PyTorch's classes (N,)
    acc: float


def export_run(
    run_dir: RunDir | str | Path,
    *,
    out_dir: str | Path | None = None,
    int8: bool = False,
    force: bool = False,
    tolerance: float = 1.0,
    data_dir: str | None = None,
    test_subset: int | None = None,
    calibration_size: int = 300,
    opset: int = DEFAULT_OPSET,
    checkpoint: str = "best",
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Export a run's checkpoint to ``model.onnx`` (+ ``model.int8.onnx``) with JSON sidecars.

    Each exported model is then evaluated with ONNX Runtime on the test split (all of it, or
    a seeded ``test_subset``) next to the PyTorch model on the same images. ``tolerance`` is
    in accuracy points (percent): the result's ``ok`` is False when an exported model is more
    than that below PyTorch; the files are kept either way. Existing files are never
    overwritten unless ``force``. Default ``out_dir``: ``<run>/export``.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.path.is_dir():
        raise ExportError(f"{run.path} is not a run directory")
    model, ckpt = load_trained(run, checkpoint)
    out = Path(out_dir) if out_dir is not None else export_dir(run)
    _refuse_to_overwrite(out, int8, force)

    ds = checkpoint_dataset(ckpt, data_dir)
    if test_subset is not None and test_subset < len(ds.y_test):
        ds = ds.subset(None, test_subset, seed=0)
    log(f"evaluating the PyTorch model on {len(ds.y_test):,} test images ...")
    ref = _torch_reference(model, ckpt, ds)

    out.mkdir(parents=True, exist_ok=True)
    base = _sidecar_base(run, ckpt, checkpoint, opset)
    variants = _write_models(model, ckpt, ds, out, int8, calibration_size, opset, log)
    result: dict[str, Any] = {
        "run": str(run.path),
        "out_dir": str(out),
        "test_images": len(ref.y),
        "torch_acc": ref.acc,
        "tolerance_points": tolerance,
        "models": [],
    }
    for precision, path, qinfo in variants:
        log(f"evaluating {path.name} with ONNX Runtime ...")
        entry = _evaluate(precision, path, ckpt, ref, tolerance)
        entry["sidecar"] = str(write_sidecar(path, _sidecar(base, entry, ref, qinfo)))
        result["models"].append(entry)
    result["ok"] = all(m["ok"] for m in result["models"])
    return result


def _refuse_to_overwrite(out: Path, int8: bool, force: bool) -> None:
    precisions = ("fp32", "int8") if int8 else ("fp32",)
    targets = [out / ONNX_FILES[p] for p in precisions]
    targets = [f for t in targets for f in (t, sidecar_path(t))]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise ExportError(f"{', '.join(existing)} already exist(s); use --force to overwrite")


def _torch_reference(model: Any, ckpt: dict[str, Any], ds: Any) -> _Reference:
    import torch

    from cnnbench.data import BatchIterator
    from cnnbench.train.loop import predict_logits

    mean, std = tuple(ckpt["mean"]), tuple(ckpt["std"])
    batches = BatchIterator(ds.x_test, ds.y_test, 500, shuffle=False, mean=mean, std=std)
    logits, _ = predict_logits(model, batches, device=torch.device("cpu"))
    pred, y = logits.argmax(1).numpy(), ds.y_test.numpy()
    return _Reference(ds.x_test.numpy(), y, pred, float((pred == y).mean()))


def _sidecar_base(run: RunDir, ckpt: dict[str, Any], checkpoint: str, opset: int) -> dict[str, Any]:
    """What every sidecar of this export says: the model's facts and where it came from."""
    summary = run.summary() or {}
    return {
        **model_facts(ckpt),
        "source_run": str(run.path.resolve()),
        "source_checkpoint": run.checkpoint_path(checkpoint).name,
        "source_epoch": ckpt.get("epoch"),
        "source_test_acc": summary.get("test_acc"),
        "opset": opset,
    }


def _write_models(
    model: Any,
    ckpt: dict[str, Any],
    ds: Any,
    out: Path,
    int8: bool,
    calibration_size: int,
    opset: int,
    log: Callable[[str], Any],
) -> list[tuple[str, Path, dict[str, Any]]]:
    """[(precision, path, quantisation facts)]: the fp32 file and, with ``int8``, the int8 one
    calibrated on ``calibration_size`` training images."""
    from cnnbench.inference import checkpoint_input_size

    fp32 = out / ONNX_FILES["fp32"]
    log(f"exporting {fp32} ...")
    export_onnx(model, fp32, input_size=checkpoint_input_size(ckpt), opset=opset)
    variants: list[tuple[str, Path, dict[str, Any]]] = [("fp32", fp32, {})]
    if int8:
        q_path = out / ONNX_FILES["int8"]
        log(f"quantising to int8 ({calibration_size} calibration images) -> {q_path} ...")
        calib = calibration_images(ds.x_train, ds.y_train, calibration_size)
        qinfo = quantize_int8(fp32, q_path, calib, ckpt["mean"], ckpt["std"])
        variants.append(("int8", q_path, qinfo))
    return variants


def _evaluate(
    precision: str, path: Path, ckpt: dict[str, Any], ref: _Reference, tolerance: float
) -> dict[str, Any]:
    """One exported file's accuracy through ONNX Runtime, and its agreement with PyTorch."""
    pred = run_onnx(ort_session(path), ref.x_test, ckpt["mean"], ckpt["std"]).argmax(1)
    acc = float((pred == ref.y).mean())
    drop = (ref.acc - acc) * 100
    return {
        "precision": precision,
        "path": str(path),
        "bytes": path.stat().st_size,
        "onnx_acc": acc,
        "drop_points": drop,
        "agreement": float((pred == ref.pred).mean()),
        "ok": drop <= tolerance,
    }


def _sidecar(
    base: dict[str, Any], entry: dict[str, Any], ref: _Reference, qinfo: dict[str, Any]
) -> dict[str, Any]:
    from cnnbench.env import library_versions

    path = Path(entry["path"])
    sidecar = {
        **base,
        "precision": entry["precision"],
        "onnx_file": path.name,
        "onnx_sha256": sha256_of(path),
        "bytes": entry["bytes"],
        "export_eval": {
            "test_images": len(ref.y),
            "torch_acc": ref.acc,
            "onnx_acc": entry["onnx_acc"],
            "agreement_with_torch": entry["agreement"],
        },
        "versions": library_versions(),
    }
    if qinfo:
        sidecar["quantization"] = qinfo
    return sidecar
