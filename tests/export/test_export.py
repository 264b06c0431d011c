"""ONNX export (single file, same outputs), int8, and `cnnbench export` of a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnbench.bench.errors import BenchError
from cnnbench.cli import main
from cnnbench.export import check_single_file, export_onnx, export_run
from cnnbench.inference import ort_session
from cnnbench.models import create_model


@pytest.mark.parametrize("name", ["lenet5", "mobilenetv2_reduced"])
def test_export_is_one_file_and_matches_torch(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no external-data side file
    check_single_file(path)
    x = torch.randn(5, 3, 32, 32)  # another batch size than exported with: the axis is dynamic
    with torch.inference_mode():
        want = model(x).numpy()
    got = ort_session(path, threads=1).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_export_run_fp32_and_int8(trained_run, tmp_path):
    out = tmp_path / "exp"
    res = export_run(trained_run, out_dir=out, int8=True, calibration_size=200, log=lambda m: None)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["model.int8.json", "model.int8.onnx", "model.json", "model.onnx"]
    fp32, int8 = res["models"]
    # fp32 through ONNX Runtime is the same model: same predictions.
    assert fp32["agreement"] >= 0.998 and abs(fp32["drop_points"]) <= 0.2
    # int8 predicts the same class as PyTorch on most test images.
    assert int8["agreement"] >= 0.8
    assert int8["bytes"] < fp32["bytes"]
    meta = json.loads((out / "model.int8.json").read_text())
    summary = json.loads((trained_run / "summary.json").read_text())
    assert meta["classes"][3] == "cat" and meta["input_size"] == [3, 32, 32]
    assert meta["model"] == "lenet5" and meta["dataset"] == "cifar10"
    assert meta["source_test_acc"] == summary["test_acc"] and len(meta["mean"]) == 3
    assert meta["precision"] == "int8" and meta["quantization"]["format"] == "QDQ"
    assert meta["export_eval"]["test_images"] == 10000


def test_existing_export_is_never_overwritten(trained_run, tmp_path, capsys):
    out = tmp_path / "exp"
    argv = ["export", str(trained_run), "--format", "onnx", "--out", str(out)]
    argv += ["--test-subset", "300"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "PyTorch:" in printed and "ONNX Runtime" in printed
    before = (out / "model.onnx").stat().st_mtime_ns
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "model.onnx").stat().st_mtime_ns == before
    with pytest.raises(BenchError, match="already exist"):
        export_run(trained_run, out_dir=out, test_subset=300, log=lambda m: None)
    assert main([*argv, "--force"]) == 0


def test_accuracy_outside_tolerance_exits_1_and_keeps_files(trained_run, tmp_path, capsys):
    out = tmp_path / "exp"
    # A negative tolerance demands the export be *more* accurate than PyTorch: it cannot be.
    argv = ["export", str(trained_run), "--out", str(out)]
    argv += ["--test-subset", "200", "--tolerance", "-5"]
    assert main(argv) == 1
    assert "--tolerance" in capsys.readouterr().err
    assert (out / "model.onnx").is_file() and (out / "model.json").is_file()


def test_export_of_a_missing_run_is_a_user_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_export_of_a_zoo_model_needs_an_output_folder(tmp_path, monkeypatch, capsys):
    from cnnbench import zoo

    shipped = tmp_path / "tiny-zoo"
    shipped.mkdir()
    (shipped / "zoo.json").write_text("{}")
    monkeypatch.setattr(zoo, "find", lambda name: shipped if name == "tiny-zoo" else None)
    assert main(["export", "tiny-zoo"]) == 2
    err = capsys.readouterr().err
    assert "shipped zoo model" in err and "--out" in err and err.count("\n") == 1
    assert not (shipped / "export").exists()


def test_export_reads_the_checkpoint_it_is_told_to(tmp_path, capsys):
    (tmp_path / "last.pt").write_bytes(b"")
    assert main(["export", str(tmp_path / "last.pt")]) == 2
    assert "best.pt" in capsys.readouterr().err


def test_int8_collects_the_per_tensor_fallbacks_instead_of_printing_them(tmp_path, caplog):
    """FastNet's BatchNorms follow max-pools, so no convolution absorbs them and ORT quantises
    their 1-D scales per tensor: recorded in the info, not one warning line per weight."""
    import logging

    from cnnbench.export.int8 import quantize_int8

    torch.manual_seed(0)
    path = export_onnx(create_model("fastnet", widths=(8, 8, 8)).eval(), tmp_path / "m.onnx")
    x = np.random.default_rng(0).integers(0, 256, (32, 3, 32, 32), dtype=np.uint8)
    with caplog.at_level(logging.WARNING):
        info = quantize_int8(path, tmp_path / "m.int8.onnx", x, [0.5] * 3, [0.25] * 3)
    assert "groups.0.bn1.weight" in info["per_tensor_weights"]
    assert not [r for r in caplog.records if "out-of-range" in r.getMessage()]
    assert logging.getLogger().filters == []  # the filter does not outlive the call
    assert ort_session(tmp_path / "m.int8.onnx", threads=1) is not None
