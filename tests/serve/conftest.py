"""A tiny trained LeNet-5 run, its two served models, and real images in every format."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnbench.serve import create_app, load_served_model
from cnnbench.train import load_config, train

TINY = {
    "model": "lenet5",
    "model_args": {"activation": "relu", "pool": "max"},
    "dataset": "cifar10",
    "optimizer": "adam",
    "lr": 0.002,
    "epochs": 3,
    "batch_size": 64,
    "train_subset": 1000,
    "val_size": 200,
    "test_subset": 200,
    "threads": 1,
    "name": "tiny",
}


@pytest.fixture(scope="session")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("serve-runs")
    train(load_config({**TINY, "data_dir": str(data_dir)}), runs_dir=runs, progress=False)
    return runs / "tiny"


@pytest.fixture(scope="session")
def onnx_model(run_dir: Path):
    """The onnxruntime model; loading it exports ``<run>/export/model.onnx`` on the fly."""
    return load_served_model(run_dir, backend="onnxruntime")


@pytest.fixture(scope="session")
def torch_model(run_dir: Path):
    return load_served_model(run_dir, backend="torch")


@pytest.fixture(scope="session")
def client(onnx_model):
    from fastapi.testclient import TestClient

    with TestClient(create_app(model=onnx_model), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def cifar_images(cifar10) -> list[Image.Image]:
    """Eight real CIFAR-10 test images as PIL RGB images."""
    x = cifar10.x_test[:8].permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in x]


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def encode():
    """``encode(pil_image, "PNG", **save_options) -> bytes``."""
    return _encode


@pytest.fixture(scope="session")
def photo(cifar_images) -> Image.Image:
    """A larger, non-square RGB image (a CIFAR image upscaled to 160x120)."""
    return cifar_images[0].resize((160, 120), Image.Resampling.BICUBIC)
