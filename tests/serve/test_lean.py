"""A lean ONNX Runtime server: its process never imports torch, and a temporary export
leaves no folder behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SERVE_AND_REPORT = """
import io, json, sys
from PIL import Image
from fastapi.testclient import TestClient
from cnnbench.cli import build_parser
from cnnbench.cli.bench import run_arg
from cnnbench.serve import create_app

build_parser().parse_args(["serve", sys.argv[1]])  # the CLI's own imports, too
app = create_app(run_arg(sys.argv[1]), backend="onnxruntime", workers=1)
buf = io.BytesIO()
Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, "PNG")
with TestClient(app) as c:
    status = c.post("/predict", files={"file": ("a.png", buf.getvalue())}).status_code
    model = c.get("/model").json()
torch = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(json.dumps({"status": status, "torch": torch[:5], "model": model}))
"""


def serve_in_subprocess(run: str, tmp: Path) -> dict:
    """Start the service's ONNX Runtime code path in a fresh interpreter (TMPDIR: ``tmp``)."""
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, run],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_onnx_server_with_an_export_imports_no_torch(onnx_model, run_dir, tmp_path):
    assert (run_dir / "export" / "model.onnx").is_file()  # made by the onnx_model fixture
    out = serve_in_subprocess(str(run_dir), tmp_path)
    assert out["status"] == 200 and out["model"]["model"] == "lenet5"
    assert out["torch"] == []


def test_zoo_model_is_exported_aside_and_leaves_no_temp_folder(tmp_path):
    """A shipped zoo model has no export: it is made in a child process (which imports
    torch and exits) into a temporary folder, removed once ONNX Runtime has loaded it."""
    from cnnbench import zoo

    if "fastnet_small-cifar10" not in zoo.names():
        pytest.skip("the zoo model fastnet_small-cifar10 is not shipped")
    out = serve_in_subprocess("fastnet_small-cifar10", tmp_path)
    assert out["status"] == 200 and out["model"]["model"] == "fastnet_small"
    assert out["model"]["file"] == "model.onnx" and len(out["model"]["sha256"]) == 64
    assert out["torch"] == []
    assert [p.name for p in tmp_path.glob("cnnbench-serve-*")] == []
    assert not (zoo.find("fastnet_small-cifar10") / "export").exists()  # never written


def test_export_child_reports_its_failure_in_one_line(tmp_path):
    from cnnbench.inference import ModelLoadError
    from cnnbench.rundir import RunDir
    from cnnbench.serve.exporter import export_in_child

    (tmp_path / "run").mkdir()
    with pytest.raises(ModelLoadError, match=r"ONNX export of .* failed: .*checkpoint"):
        export_in_child(RunDir(tmp_path / "run"), tmp_path)
