"""A tiny trained LeNet-5 run, its two served models, and real images in every format; a
stand-in model (no data needed) and a real uvicorn server in a thread for protocol tests."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnbench.serve import ServedModel, create_app, load_served_model
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


class UniformPredictor:
    """Equal probabilities for every image: for tests of the service, not of a model."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), 10), 0.1, dtype=np.float32)


@pytest.fixture
def fake_model() -> ServedModel:
    """A served model that needs no data or training (a fresh one per test: its limits and
    its large-decode slots are the test's own)."""
    return ServedModel(
        name="fake",
        model="lenet5",
        dataset="cifar10",
        classes=[f"class{i}" for i in range(10)],
        input_size=(3, 32, 32),
        backend="onnxruntime",
        source="/nowhere/fake",
        predictor=UniformPredictor(),
        file="model.onnx",
        sha256="0" * 64,
    )


@pytest.fixture(scope="session")
def live_server():
    """``live_server(app, head_timeout=30.0)``: a context manager yielding the port."""
    return _live_server


@contextmanager
def _live_server(app, head_timeout: float = 30.0) -> Iterator[int]:
    """``app`` behind a real uvicorn server (the protocol ``cnnbench serve`` runs) on a free
    loopback port, in a thread; yields the port."""
    import uvicorn

    from cnnbench.serve.protocol import protocol_class

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        http=protocol_class(head_timeout=head_timeout),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
