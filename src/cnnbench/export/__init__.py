"""Export: a model as one ONNX file, static int8 quantisation, and `cnnbench export` of a run.

    export_onnx(model, "m.onnx", input_size=(3, 32, 32))           # fp32, opset 17, dynamic batch
    quantize_int8("m.onnx", "m.int8.onnx", calib_uint8, mean, std)  # QDQ, per-channel, static
    export_run("runs/mnv2r", int8=True)                            # files + sidecars + accuracy

The files are run by ``cnnbench.inference`` (``Predictor``, the service) and timed by
``cnnbench.bench``; the sidecar's layout is ``cnnbench.inference.sidecar``'s.
"""

from cnnbench.export.errors import ExportError
from cnnbench.export.int8 import calibration_data, calibration_images, quantize_int8
from cnnbench.export.onnx import DEFAULT_OPSET, check_single_file, export_onnx
from cnnbench.export.run import export_run

__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "calibration_data",
    "calibration_images",
    "check_single_file",
    "export_onnx",
    "export_run",
    "quantize_int8",
]
