"""Fixtures of the data tests: a private cache, the real packed CIFAR, small fakes."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cnnbench.data import ImageDataset, load_dataset


@pytest.fixture(scope="session", autouse=True)
def _private_cache() -> Iterator[Path]:
    """The session's private decode cache (set up by tests/conftest.py), never ~/.cache."""
    cache = Path(os.environ["CNNBENCH_CACHE"])
    yield cache


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder with the packed CIFAR files (`$CNNBENCH_DATA`), or skip."""
    env = os.environ.get("CNNBENCH_DATA")
    if not env:
        pytest.skip("CNNBENCH_DATA is not set: point it at the packed CIFAR folder")
    path = Path(env)
    if not (path / "cifar10.npz").is_file() or not (path / "cifar100.npz").is_file():
        pytest.skip(f"CNNBENCH_DATA={env} holds no cifar10.npz / cifar100.npz")
    return path


@pytest.fixture(scope="session")
def cifar10(real_data_dir: Path, _private_cache: Path) -> ImageDataset:
    """CIFAR-10 from the packed file, decoded once per session (a few seconds)."""
    return load_dataset("cifar10", data_dir=real_data_dir, show_progress=False)


@pytest.fixture(scope="session")
def cifar100(real_data_dir: Path, _private_cache: Path) -> ImageDataset:
    return load_dataset("cifar100", data_dir=real_data_dir, show_progress=False)


def random_images(n: int, seed: int, size: int = 32) -> np.ndarray:
    """uint8 (n, 3, size, size)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def write_packed_npz(
    path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], tile: int = 2
) -> None:
    """A packed file in the README's format: `splits[name] = (x (N, 3, 32, 32), y (N,))`."""
    from PIL import Image

    arrays: dict[str, np.ndarray] = {"codec": np.array("webp"), "tile": np.array(tile)}
    per = tile * tile
    for split, (x, y) in splits.items():
        n = len(x)
        padded = np.zeros((-(-n // per) * per, 32, 32, 3), dtype=np.uint8)
        padded[:n] = x.transpose(0, 2, 3, 1)
        blobs = []
        for m in range(len(padded) // per):
            mosaic = padded[m * per : (m + 1) * per].reshape(tile, tile, 32, 32, 3)
            mosaic = mosaic.transpose(0, 2, 1, 3, 4).reshape(tile * 32, tile * 32, 3)
            buf = io.BytesIO()
            Image.fromarray(mosaic).save(buf, format="WEBP", lossless=True)
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        arrays[f"{split}_blob"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
        arrays[f"{split}_count"] = np.array(n)
        arrays[f"y_{split}"] = y.astype(np.uint8)
    np.savez(path, **arrays)


def write_torchvision_cifar10(
    root: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> Path:
    """A `cifar-10-batches-py` folder as torchvision extracts it (5 train batches + test)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, x: np.ndarray, y: np.ndarray) -> None:
        batch = {
            "batch_label": name,
            "labels": [int(v) for v in y],
            "data": x.reshape(len(x), -1),
            "filenames": [f"img_{i}.png" for i in range(len(x))],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i, (xs, ys) in enumerate(
        zip(np.array_split(x_train, 5), np.array_split(y_train, 5), strict=True), start=1
    ):
        dump(f"data_batch_{i}", xs, ys)
    dump("test_batch", x_test, y_test)
    meta = {"label_names": [f"tv_class_{i}" for i in range(10)], "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


@pytest.fixture
def make_packed_npz():
    """`write_packed_npz(path, {"train": (x, y), "test": (x, y)}, tile=2)`."""
    return write_packed_npz


@pytest.fixture
def make_torchvision_cifar10():
    """`write_torchvision_cifar10(root, x_train, y_train, x_test, y_test) -> folder`."""
    return write_torchvision_cifar10
