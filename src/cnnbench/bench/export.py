"""ONNX export (single file), static int8 quantisation, and `cnnbench export` of a run.

    export_onnx(model, "m.onnx", input_size=(3, 32, 32))          # fp32, opset 17, dynamic batch
    quantize_int8("m.onnx", "m.int8.onnx", calib_uint8, mean, std)  # QDQ, per-channel, static
    export_run("runs/mnv2r", int8=True)                           # files + sidecar + accuracy

The exporter is torch's TorchScript-based one (``dynamo=False``): in torch 2.14 it is
deprecated but supported, takes seconds where the dynamo exporter takes ~40 s for
MobileNetV2, folds BatchNorm into the convolutions in eval mode, and writes the weights
inside the file. If it is ever removed, the dynamo exporter is used with
``external_data=False``. Either way ``check_single_file`` proves no weight lives outside.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.bench.errors import BenchError
from cnnbench.fileio import write_json_atomic

__all__ = [
    "DEFAULT_OPSET",
    "BenchError",
    "check_single_file",
    "export_onnx",
    "export_run",
    "ort_session",
    "quantize_int8",
    "run_onnx",
]

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
SIDECAR_FORMAT = 1


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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                model, (x,), str(path), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )  # fmt: skip
    except (TypeError, NotImplementedError, RuntimeError) as legacy_error:
        # The legacy exporter is gone or failed: the dynamo exporter, weights embedded.
        try:
            program = torch.onnx.export(
                model, (x,), dynamo=True, opset_version=max(opset, 18),
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )  # fmt: skip
            program.save(str(path), external_data=False)
        except Exception as e:
            raise RuntimeError(f"ONNX export failed ({legacy_error}; dynamo: {e})") from e
    finally:
        model.train(was_training)
    check_single_file(path)
    return path


def check_single_file(path: str | Path) -> None:
    """Raise ValueError if any initializer of the ONNX file lives in external data."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    for init in m.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"{path}: initializer {init.name!r} is stored outside the file")


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """A CPU ``InferenceSession``: all graph optimisations, sequential, fixed thread count.

    ``threads=None`` lets ONNX Runtime use every core. ``run`` on the session is thread-safe.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3  # no warnings about unused initializers on the console
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def normalize_np(x_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x / 255 - mean) / std`` per channel of a uint8 (N, C, H, W) array, float32."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((x_uint8.astype(np.float32) / np.float32(255.0)) - m) / s


def run_onnx(
    session: Any,
    x_uint8: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
) -> np.ndarray:
    """Logits (N, classes) of uint8 images through an ONNX Runtime session, in batches."""
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: normalize_np(x_uint8[i : i + batch_size], mean, std)})[0]
        for i in range(0, len(x_uint8), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


class _Calibration:
    """``CalibrationDataReader`` over normalised uint8 images, ``batch`` images per read."""

    def __init__(self, x_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 input_name: str, batch: int = 16) -> None:  # fmt: skip
        self._batches = [
            {input_name: normalize_np(x_uint8[i : i + batch], mean, std)}
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
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"format": "QDQ", "per_channel": True, "activations": "int8",
                            "weights": "int8", "calibration": "MinMax",
                            "calibration_images": len(calib_uint8)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cnnbench-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
            source = pre
            info["preprocessed"] = True
        except Exception as e:  # its failure is not fatal: quantise the plain graph
            source = Path(fp32_path)
            info["preprocessed"] = False
            info["preprocess_error"] = f"{type(e).__name__}: {e}"
        import onnx

        input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
        reader = _Calibration(calib_uint8, mean, std, input_name)
        quantize_static(
            str(source), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )  # fmt: skip
    check_single_file(out_path)
    return info


def calibration_images(x_train: Any, y_train: Any, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training images, stratified by class and seeded, as a uint8 numpy array."""
    import torch

    from cnnbench.data import stratified_sample

    n = min(n, len(x_train))
    idx = stratified_sample(y_train, n, torch.Generator().manual_seed(seed))
    return x_train[idx].numpy()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_run(
    run_dir: str | Path,
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
    log: Any = print,
) -> dict[str, Any]:
    """Export a run's checkpoint to ``model.onnx`` (+ ``model.int8.onnx``) with JSON sidecars.

    Each exported model is then evaluated with ONNX Runtime on the test split (all of it, or
    a seeded ``test_subset``) next to the PyTorch model on the same images. ``tolerance`` is
    in accuracy points (percent): the result's ``ok`` is False when an exported model is more
    than that below PyTorch; the files are kept either way. Existing files are never
    overwritten unless ``force``. Default ``out_dir``: ``<run>/export``.
    """
    import torch

    from cnnbench.data import load_dataset
    from cnnbench.train import CheckpointError, model_from_checkpoint
    from cnnbench.train.loop import predict_logits

    run = Path(run_dir)
    ckpt_path = run / f"{checkpoint}.pt"
    if not run.is_dir():
        raise BenchError(f"{run} is not a run directory")
    try:
        model, ckpt = model_from_checkpoint(ckpt_path)
    except CheckpointError as e:
        raise BenchError(str(e)) from e
    out = Path(out_dir) if out_dir is not None else run / "export"
    targets = [out / "model.onnx", out / "model.json"]
    if int8:
        targets += [out / "model.int8.onnx", out / "model.int8.json"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise BenchError(f"{', '.join(existing)} already exist(s); use --force to overwrite")

    cfg = ckpt["config"]
    image_size = int(cfg.get("image_size", 32))
    input_size = (3, image_size, image_size)
    mean, std = tuple(ckpt["mean"]), tuple(ckpt["std"])
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    ds = load_dataset(cfg["dataset"], data_dir=data_dir or cfg.get("data_dir"),
                      image_size=image_size, label_kind=cfg.get("label_kind", "fine"),
                      show_progress=False)  # fmt: skip
    if test_subset is not None and test_subset < len(ds.y_test):
        ds = ds.subset(None, test_subset, seed=0)
    x_test, y_test = ds.x_test, ds.y_test

    from cnnbench.data import BatchIterator

    log(f"evaluating the PyTorch model on {len(y_test):,} test images ...")
    batches = BatchIterator(x_test, y_test, 500, shuffle=False, mean=mean, std=std)
    logits, _ = predict_logits(model, batches, device=torch.device("cpu"))
    torch_pred = logits.argmax(1).numpy()
    y = y_test.numpy()
    torch_acc = float((torch_pred == y).mean())

    out.mkdir(parents=True, exist_ok=True)
    base = {
        "format": SIDECAR_FORMAT,
        "model": ckpt["model_spec"]["name"],
        "model_spec": ckpt["model_spec"],
        "dataset": cfg["dataset"],
        "classes": list(ckpt["classes"]),
        "input_size": list(input_size),
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "preprocess": "RGB, resize to input size (bilinear), x / 255, "
            "then (x - mean) / std per channel",
        },
        "output": {"name": OUTPUT_NAME, "kind": "logits (softmax gives probabilities)"},
        "mean": list(mean),
        "std": list(std),
        "source_run": str(run.resolve()),
        "source_checkpoint": f"{checkpoint}.pt",
        "source_epoch": ckpt.get("epoch"),
        "source_test_acc": summary.get("test_acc"),
        "opset": opset,
    }
    from cnnbench.env import library_versions

    versions = library_versions()
    result: dict[str, Any] = {"run": str(run), "out_dir": str(out), "test_images": len(y),
                              "torch_acc": torch_acc, "tolerance_points": tolerance,
                              "models": []}  # fmt: skip

    fp32 = out / "model.onnx"
    log(f"exporting {fp32} ...")
    export_onnx(model, fp32, input_size=input_size, opset=opset)
    variants: list[tuple[str, Path, dict[str, Any]]] = [("fp32", fp32, {})]
    if int8:
        q_path = out / "model.int8.onnx"
        log(f"quantising to int8 ({calibration_size} calibration images) -> {q_path} ...")
        calib = calibration_images(ds.x_train, ds.y_train, calibration_size)
        variants.append(("int8", q_path, quantize_int8(fp32, q_path, calib, mean, std)))

    x_np = x_test.numpy()
    for precision, path, qinfo in variants:
        log(f"evaluating {path.name} with ONNX Runtime ...")
        pred = run_onnx(ort_session(path), x_np, mean, std).argmax(1)
        acc = float((pred == y).mean())
        drop = (torch_acc - acc) * 100
        entry = {
            "precision": precision,
            "path": str(path),
            "bytes": path.stat().st_size,
            "onnx_acc": acc,
            "drop_points": drop,
            "agreement": float((pred == torch_pred).mean()),
            "ok": drop <= tolerance,
        }
        sidecar = {
            **base,
            "precision": precision,
            "onnx_file": path.name,
            "onnx_sha256": _sha256(path),
            "bytes": entry["bytes"],
            "export_eval": {
                "test_images": len(y),
                "torch_acc": torch_acc,
                "onnx_acc": acc,
                "agreement_with_torch": entry["agreement"],
            },
            "versions": versions,
        }
        if qinfo:
            sidecar["quantization"] = qinfo
        sidecar_path = path.with_suffix(".json")
        write_json_atomic(sidecar_path, sidecar)
        entry["sidecar"] = str(sidecar_path)
        result["models"].append(entry)
    result["ok"] = all(m["ok"] for m in result["models"])
    return result
