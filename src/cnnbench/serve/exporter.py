"""The ONNX export a served run lacks, made in a child process so the server imports no torch.

    path = export_in_child(run, tmp_dir)   # <run>/export/model.onnx, or tmp_dir/model.onnx

The ONNX Runtime server needs only onnxruntime, numpy and Pillow (its baseline RSS is that
of those libraries); exporting needs PyTorch (~500 MB resident once imported, never given
back). So the export runs in ``python -m cnnbench.serve.exporter RUN TMP_DIR``, which exits
when done, and the server then loads the file it wrote.

The child does what ``cnnbench export`` does (``export_run``: the ONNX file, its sidecar and
an accuracy check against PyTorch on 500 test images) into ``<run>/export/``. Without the
run's dataset, or for a shipped zoo model (never written to), it writes the ONNX file and a
sidecar, unchecked, into ``TMP_DIR``, which the caller owns and removes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from cnnbench.inference import ModelLoadError
from cnnbench.rundir import RunDir

__all__ = ["export_for_serving", "export_in_child", "main"]

log = logging.getLogger("cnnbench.serve")


def export_in_child(run: RunDir, tmp_dir: Path) -> Path:
    """Run ``export_for_serving`` in a fresh interpreter; the ONNX path it made, or
    ``ModelLoadError`` with the child's reason."""
    level = logging.getLevelName(log.getEffectiveLevel())
    cmd = [sys.executable, "-m", "cnnbench.serve.exporter", str(run.path), str(tmp_dir), level]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if done.returncode != 0 or "onnx" not in answer:
        why = answer.get("error") or f"the export process exited with code {done.returncode}"
        raise ModelLoadError(f"ONNX export of {run.path} failed: {why}")
    return Path(answer["onnx"])


def export_for_serving(run: RunDir, tmp_dir: Path) -> Path:
    """The run's fp32 ONNX file with its sidecar: exported and checked into ``<run>/export``
    when the dataset is there and the run is not a zoo model, else unchecked into ``tmp_dir``."""
    from cnnbench.data import DataError
    from cnnbench.export import export_onnx, export_run
    from cnnbench.inference import checkpoint_input_size, load_trained, model_facts, write_sidecar
    from cnnbench.inference.sidecar import ONNX_FILES, export_dir

    if run.zoo_card() is None:
        log.info("no ONNX export in %s: exporting it (with an accuracy check) ...", run.path)
        try:
            export_run(run, test_subset=500, log=log.info)
            return export_dir(run) / ONNX_FILES["fp32"]
        except DataError as e:
            log.warning("no accuracy check possible (%s): exporting to a temporary folder", e)
    model, ckpt = load_trained(run)
    path = tmp_dir / ONNX_FILES["fp32"]
    export_onnx(model, path, input_size=checkpoint_input_size(ckpt))
    write_sidecar(path, model_facts(ckpt))
    return path


def main(argv: list[str] | None = None) -> int:
    """``RUN TMP_DIR [LOG_LEVEL]``: prints one JSON line, ``{"onnx": path}`` or ``{"error"}``."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=args[2] if len(args) > 2 else "INFO",
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        path = export_for_serving(RunDir(args[0]), Path(args[1]))
    except Exception as e:  # everything goes back to the parent as one line
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 2
    print(json.dumps({"onnx": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
