"""Fixtures of the robustness tests: small smooth synthetic images (no data needed), a private
cache, fake models whose accuracy is known, and a fake run of an untrained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 32, 32, 3) images with structure at several scales (blurred noise plus a
    gradient), so blurs and noise change them the way they change photographs."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(n, 32, 32, 3)), (0, 2, 2, 0))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    ramp = np.linspace(0, 1, 32)[None, :, None, None]
    return np.clip((0.7 * noise + 0.3 * ramp) * 255, 0, 255).astype(np.uint8)


@pytest.fixture
def images() -> np.ndarray:
    return smooth_images(6)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches corrupted images in its own folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CNNBENCH_CACHE", str(folder))
    return folder


class ConstantModel(torch.nn.Module):
    """Predicts class ``k`` for every image: its accuracy is the share of class ``k``."""

    def __init__(self, k: int = 0, classes: int = 10) -> None:
        super().__init__()
        self.k, self.classes = k, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), self.classes)
        out[:, self.k] = 1.0
        return out


@pytest.fixture
def make_images():
    """``make_images(n, seed)``: smooth synthetic uint8 (n, 32, 32, 3) images."""
    return smooth_images


@pytest.fixture
def constant_model():
    """``constant_model(k)``: a model that always predicts class ``k``."""
    return ConstantModel
