from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnbench.cli import main
from cnnbench.explore import ExploreError, ExploreOptions, explore


def _check_png(path: Path) -> None:
    from PIL import Image

    assert path.stat().st_size > 5000, path
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 5, f"{path} is (nearly) uniform"


def _lenet_run(tmp_path: Path, dataset: str, num_classes: int = 4) -> Path:
    """A run directory with a checkpoint as cnnbench.train writes it (untrained weights)."""
    from cnnbench.models import create_model
    from cnnbench.train import save_checkpoint

    model = create_model("lenet5", num_classes=num_classes)
    run = tmp_path / "runs" / "lenet"
    save_checkpoint(
        {
            "model": model.state_dict(),
            "model_spec": model.cnnbench_spec,
            "config": {"dataset": dataset, "image_size": 32},
            "epoch": 1,
            "classes": [f"c{i}" for i in range(num_classes)],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
        },
        run / "best.pt",
    )
    return run


def test_explore_writes_json_markdown_and_figures(small_dataset, tmp_path):
    from cnnbench.models import create_model

    model = create_model("lenet5", num_classes=4, input_size=16)
    ckpt = {"mean": [0.5] * 3, "std": [0.25] * 3, "model_spec": model.cnnbench_spec}
    opts = ExploreOptions(tsne_samples=24, pca_samples=40, knn_train=60, seed=0)
    r = explore(
        small_dataset, tmp_path / "out", options=opts, run=(model, ckpt, "lenet"), progress=False
    )

    saved = json.loads((tmp_path / "out" / "explore.json").read_text())
    assert saved == json.loads(json.dumps(r))
    for key in ("dataset", "counts", "mean_std", "duplicates", "pca", "knn", "tsne",
                "timings_s", "figures", "summary_markdown"):  # fmt: skip
        assert key in saved, key
    assert saved["counts"]["train"]["per_class"] == {f"class_{c}": 30 for c in range(4)}
    assert saved["duplicates"]["within_train"]["redundant"] == 1
    assert saved["duplicates"]["across"]["test_images"] == 1
    assert saved["duplicates"]["label_conflicts"] == 1
    assert saved["knn"]["accuracy"] > 0.95 and saved["knn"]["train_images"] == 60
    assert saved["tsne"]["features"]["num_features"] == model.num_features
    assert set(saved["timings_s"]) >= {"statistics", "duplicates", "pca", "tsne_pixels",
                                       "tsne_features", "knn"}  # fmt: skip
    titles = [f["title"] for f in saved["figures"]]
    assert len(titles) == 6 and "Exact-duplicate images" in titles
    for f in saved["figures"]:
        _check_png(tmp_path / "out" / f["path"])
    assert saved["summary_markdown"].startswith("| split |")
    md = (tmp_path / "out" / "explore.md").read_text()
    assert "![Sample images](samples.png)" in md and "| class_3 | 30 | 10 |" in md


def test_sample_larger_than_the_split_is_an_error(small_dataset, tmp_path):
    for opts, flag in (
        (
            ExploreOptions(tsne_samples=41, pca_samples=20),
            "--tsne-samples 41 is larger than the test split",
        ),
        (ExploreOptions(tsne_samples=20, pca_samples=121), "--pca-samples 121"),
        (ExploreOptions(tsne_samples=20, pca_samples=20, knn_train=500), "--knn-train 500"),
    ):
        with pytest.raises(ExploreError, match=flag):
            explore(small_dataset, tmp_path / "out", options=opts, progress=False)
    assert not (tmp_path / "out").exists()  # checked before anything is written


def _one_error_line(capsys, argv: list[str], fragment: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_unknown_dataset(capsys, tmp_path):
    _one_error_line(capsys, ["explore", "mnist", "--out", str(tmp_path)], "unknown dataset 'mnist'")


def test_cli_run_of_another_dataset(capsys, tmp_path):
    run = _lenet_run(tmp_path, "cifar100")
    _one_error_line(
        capsys,
        ["explore", "cifar10", "--run", str(run), "--out", str(tmp_path / "o")],
        "the run was trained on cifar100, not on cifar10",
    )
    assert not (tmp_path / "o").exists()


def _image_folder(root: Path, per_class: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(np.array(colour) + rng.integers(-20, 21, (12, 12, 3)), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(d / f"{i}.png")
    return root


def test_cli_sample_larger_than_split(capsys, tmp_path):
    folder = _image_folder(tmp_path / "imgs")  # 3 classes x 8: 18 train, 6 test
    _one_error_line(capsys, ["explore", f"imagefolder:{folder}", "--out", str(tmp_path / "o"),
                             "--tsne-samples", "100", "--quiet"],
                    "--tsne-samples 100 is larger than the test split")  # fmt: skip


def test_cli_image_folder_end_to_end(capsys, tmp_path):
    folder = _image_folder(tmp_path / "imgs")
    out = tmp_path / "o"
    argv = ["explore", "imagefolder", "--data-dir", str(folder), "--out", str(out), "--quiet",
            "--tsne-samples", "6", "--pca-samples", "18", "--knn-train", "all", "--image-size", "16"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| split |" in printed and "1-NN floor: 100.00%" in printed
    saved = json.loads((out / "explore.json").read_text())
    assert saved["knn"]["train_subset"] == "all" and saved["knn"]["accuracy"] == 1.0
    assert all((out / f["path"]).is_file() for f in saved["figures"])
