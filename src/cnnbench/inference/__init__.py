"""Inference: decode images safely and classify them with a trained or exported model.

    from cnnbench.inference import Predictor, load_image
    predictor = Predictor.load("runs/mnv2r/export/model.onnx")   # or a run dir, a .pt, a zoo name
    probs = predictor.predict(load_image("cat.png", predictor.image_size)[None])

One room for what ``cnnbench predict``, ``cnnbench serve`` and ``cnnbench bench`` share:
``image`` (decoding, with one ``ImageError`` that carries its HTTP status), ``predictor``
(ONNX Runtime or PyTorch behind one thread-safe ``predict``), ``sidecar`` (the export folder
and the JSON next to each ONNX file) and ``runtime`` (ONNX Runtime sessions, numpy helpers).
Making the ONNX files is ``cnnbench.export``'s job.
"""

from cnnbench.inference.errors import ImageError, ModelLoadError
from cnnbench.inference.image import (
    ACCEPTED_FORMATS,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    check_header,
    decode_upload,
    expand_inputs,
    load_image,
)
from cnnbench.inference.predictor import Predictor, load_trained
from cnnbench.inference.runtime import ort_session, run_onnx
from cnnbench.inference.sidecar import (
    checkpoint_input_size,
    export_dir,
    model_facts,
    read_sidecar,
    write_sidecar,
)

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "ImageError",
    "ModelLoadError",
    "Predictor",
    "check_header",
    "checkpoint_input_size",
    "decode_upload",
    "expand_inputs",
    "export_dir",
    "load_image",
    "load_trained",
    "model_facts",
    "ort_session",
    "read_sidecar",
    "run_onnx",
    "write_sidecar",
]
