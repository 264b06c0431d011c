"""Corrupted test images, generated once per (images, corruption, severity, seed) and cached.

A cell's images are generated in chunks of ``CHUNK`` images, each chunk with its own
``numpy.random.Generator`` derived from one seed (``SeedSequence(seed, spawn_key=(crc32 of the
corruption's name, severity, chunk))``), so a cell is the same bytes on every machine with
the same library versions, whatever else was generated before it.

The cache lives beside the decoded datasets (``cnnbench.data.cache_dir()``, i.e.
``$CNNBENCH_CACHE`` or ``~/.cache/cnnbench``) under ``corrupted/<dataset>/``: one ``.npy`` per
cell, named by a key that covers the clean images themselves (their sha256), the
corruption, severity, seed, image count, chunk size, the implementation's version and the
numpy / scipy / Pillow versions (their random streams and resampling decide the bytes).
Files are written atomically; an unreadable or mismatched file is regenerated.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zlib
from pathlib import Path

import numpy as np

from cnnbench.data import DataWarning, cache_dir
from cnnbench.fileio import write_atomic
from cnnbench.robustness.corruptions import corrupt
from cnnbench.robustness.protocol import IMPLEMENTATION

__all__ = ["CHUNK", "cache_root", "cell_key", "corrupted", "images_digest", "rng_for"]

CHUNK = 500  # images per generator (and the most held as float64 at once: ~12 MB)


def cache_root() -> Path:
    """Where corrupted images are cached: ``cache_dir() / "corrupted"``."""
    return cache_dir() / "corrupted"


def images_digest(images: np.ndarray) -> str:
    """sha256 of uint8 images (their shape included): what identifies the clean input."""
    h = hashlib.sha256(repr((images.shape, str(images.dtype))).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


def _library_versions() -> dict[str, str]:
    import PIL
    import scipy

    return {"numpy": np.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__}


def cell_key(digest: str, n: int, corruption: str, severity: int, seed: int) -> str:
    """The 16-hex-digit cache key of one cell (see the module doc for what it covers)."""
    key = {"implementation": IMPLEMENTATION, "chunk": CHUNK, "images": digest, "n": n,
           "corruption": corruption, "severity": severity, "seed": seed,
           "versions": _library_versions()}  # fmt: skip
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def rng_for(seed: int, corruption: str, severity: int, chunk: int) -> np.random.Generator:
    """The generator of one chunk of one cell, derived from ``seed`` alone."""
    spawn = (zlib.crc32(corruption.encode()), severity, chunk)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn))


def _generate(images: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    out = np.empty_like(images)
    for i, start in enumerate(range(0, len(images), CHUNK)):
        part = images[start : start + CHUNK]
        out[start : start + CHUNK] = corrupt(part, corruption, severity,
                                             rng_for(seed, corruption, severity, i))  # fmt: skip
    return out


def _load(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.shape == shape and arr.dtype == np.uint8 else None


def corrupted(
    images: np.ndarray,
    corruption: str,
    severity: int,
    *,
    seed: int = 0,
    dataset: str = "images",
    use_cache: bool = True,
    digest: str | None = None,
) -> tuple[np.ndarray, bool]:
    """(``images`` (uint8 N x 32 x 32 x 3) through ``corruption`` at ``severity``, whether it
    came from the cache). ``dataset`` only names the cache folder; ``digest`` is
    ``images_digest(images)`` when the caller has it already."""
    if not use_cache:
        return _generate(images, corruption, severity, seed), False
    digest = digest or images_digest(images)
    key = cell_key(digest, len(images), corruption, severity, seed)
    folder = cache_root() / "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dataset)
    path = folder / f"{corruption}-s{severity}-{key}.npy"
    if path.is_file() and (hit := _load(path, images.shape)) is not None:
        return hit, True
    out = _generate(images, corruption, severity, seed)
    try:
        write_atomic(path, lambda f: np.save(f, out, allow_pickle=False))
    except OSError as e:
        warnings.warn(f"could not cache {path} ({e}); set CNNBENCH_CACHE to a writable folder",
                      DataWarning, 2)  # fmt: skip
    return out, False
