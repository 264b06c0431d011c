"""Shared test set-up: a private decode cache, and where the real CIFAR data is."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Decoded CIFAR arrays are cached once per test session (subprocesses inherit it), never
    # in the user's own cache.
    if "CNNBENCH_TEST_CACHE" not in os.environ:
        os.environ["CNNBENCH_TEST_CACHE"] = tempfile.mkdtemp(prefix="cnnbench-test-cache-")
    os.environ["CNNBENCH_CACHE"] = os.environ["CNNBENCH_TEST_CACHE"]
    os.environ.setdefault("MPLBACKEND", "Agg")


def _data_dir() -> Path | None:
    value = os.environ.get("CNNBENCH_DATA")
    if value and (Path(value) / "cifar10.npz").is_file():
        return Path(value)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real packed CIFAR folder ($CNNBENCH_DATA); tests needing it skip without it."""
    path = _data_dir()
    if path is None:
        pytest.skip("real CIFAR data not found: set CNNBENCH_DATA to the folder with cifar10.npz")
    return path


@pytest.fixture(scope="session")
def cifar10(data_dir: Path):
    """CIFAR-10, decoded once per session."""
    from cnnbench.data import load_dataset

    return load_dataset("cifar10", data_dir=data_dir, show_progress=False)
