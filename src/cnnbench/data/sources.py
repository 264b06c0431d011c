"""Locating and reading the CIFAR sources, and the decoded-array cache.

A CIFAR dataset is looked for in one data folder (`resolve_data_dir`), trying in order:

1. the packed files `cifar10.npz` / `cifar100.npz` (see `shared/data/README.md`), checked
   against `SHA256SUMS` in the same folder when it lists them, decoded once (WebP mosaics, a
   thread pool) and cached as `.npy` under `cache_dir() / "decoded"`;
2. torchvision's standard folders `cifar-10-batches-py` / `cifar-100-python` (pickled batches);
3. torchvision's download into that folder, only when `download=True`.

Every problem a user can fix (nothing found, a corrupt or truncated file, a bad checksum)
raises `DataError` naming the file or the places looked, never a bare numpy/Pillow traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.data.decode_pool import decode_all
from cnnbench.fileio import write_atomic

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "DataError",
    "DataWarning",
    "RawSplits",
    "cache_dir",
    "default_data_dir",
    "load_cifar",
    "read_packed_cifar",
    "read_torchvision_cifar",
    "resolve_data_dir",
    "sha256_file",
]


class DataError(Exception):
    """A data problem the user can fix; the message says what is wrong and what to do."""


class DataWarning(UserWarning):
    """Something was skipped or could not be cached; loading went on."""


CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

CIFAR100_COARSE_CLASSES: tuple[str, ...] = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip

_PACKED_FILE = {"cifar10": "cifar10.npz", "cifar100": "cifar100.npz"}
_TV_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_TV_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"),
    "cifar100": (["train"], ["test"], "meta"),
}
_IMAGE_HW = 32
_CACHE_FORMAT = 1  # bump when the layout of the decoded cache changes


@dataclass
class RawSplits:
    """Decoded arrays of one dataset, before they become an `ImageDataset`.

    `x_*` are uint8 (N, 3, H, W) C-contiguous, `y_*` int64 (N,).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Per-user cache: `$CNNBENCH_CACHE`, else `$XDG_CACHE_HOME/cnnbench`, else `~/.cache/cnnbench`."""
    if env := os.environ.get("CNNBENCH_CACHE"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "cnnbench"
    return Path.home() / ".cache" / "cnnbench"


def default_data_dir() -> Path:
    """Where datasets live when neither `--data-dir` nor `$CNNBENCH_DATA` is given."""
    return cache_dir() / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: `data_dir` (`--data-dir`), else `$CNNBENCH_DATA`, else the user cache."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    if env := os.environ.get("CNNBENCH_DATA"):
        return Path(env).expanduser()
    return default_data_dir()


def _where_from(data_dir: str | os.PathLike[str] | None) -> str:
    if data_dir is not None and str(data_dir) != "":
        return "--data-dir"
    if os.environ.get("CNNBENCH_DATA"):
        return "$CNNBENCH_DATA"
    return "the default, neither --data-dir nor $CNNBENCH_DATA being set"


# --------------------------------------------------------------------------- checksums


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def _expected_sha256(path: Path) -> str | None:
    """The checksum `SHA256SUMS` next to `path` lists for it, or None (no file, not listed)."""
    sums = path.parent / "SHA256SUMS"
    try:
        text = sums.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise DataError(f"cannot read {sums}: {e}") from e
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*").strip() == path.name:
            return parts[0].lower()
    return None


def _checksum_error(path: Path, expected: str, actual: str) -> DataError:
    return DataError(
        f"checksum mismatch for {path}: SHA256SUMS says {expected}, the file has {actual}. "
        "The file is corrupt or truncated; copy it again (or delete it and use --download)."
    )


# --------------------------------------------------------------------------- decoded cache


def _cache_entry(path: Path, stat: os.stat_result) -> Path:
    """Cache folder for one packed file, keyed by its absolute path, size and mtime."""
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{_CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "decoded" / f"{path.stem}-{digest}"


def _read_cache(entry: Path, path: Path, stat: os.stat_result) -> dict[str, Any] | None:
    """The cached arrays (+ "meta") if `entry` is complete and describes this very file."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if (
        meta.get("format") != _CACHE_FORMAT
        or meta.get("path") != str(path.resolve())
        or meta.get("size") != stat.st_size
        or meta.get("mtime_ns") != stat.st_mtime_ns
    ):
        return None
    try:
        # copy-on-write maps: loading is instant, pages come from the page cache on first
        # touch (shared by concurrent runs), and the arrays stay writable for torch
        arrays = {
            k: np.load(entry / f"{k}.npy", mmap_mode="c", allow_pickle=False)
            for k in meta["arrays"]
        }
    except (OSError, ValueError, KeyError) as e:
        warnings.warn(f"ignoring unreadable cache {entry} ({e}); decoding again", DataWarning, 2)
        return None
    arrays["meta"] = meta
    return arrays


def _write_cache(entry: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write the arrays then `meta.json` (its presence marks the entry complete), atomically."""
    try:
        entry.mkdir(parents=True, exist_ok=True)
        for k, a in arrays.items():
            write_atomic(entry / f"{k}.npy", lambda f, a=a: np.save(f, a, allow_pickle=False))
        meta = {**meta, "arrays": sorted(arrays)}
        write_atomic(entry / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    except OSError as e:
        warnings.warn(
            f"could not write the decoded cache {entry} ({e}); the next load decodes again. "
            "Set CNNBENCH_CACHE to a writable folder.",
            DataWarning,
            3,
        )


# --------------------------------------------------------------------------- packed npz


def _decode_mosaics(
    path: Path,
    blob: np.ndarray,
    offsets: np.ndarray,
    count: int,
    tile: int,
    desc: str,
    show_progress: bool,
) -> np.ndarray:
    """Decode a split's WebP mosaics into uint8 (count, 3, 32, 32), in a thread pool."""
    from PIL import Image

    n_mosaics = len(offsets) - 1
    per = tile * tile
    side = tile * _IMAGE_HW
    if n_mosaics * per < count or offsets[0] < 0 or offsets[-1] > len(blob):
        raise DataError(f"{path}: {desc} offsets do not match the data (file corrupt?)")
    out = np.empty((n_mosaics * per, 3, _IMAGE_HW, _IMAGE_HW), dtype=np.uint8)

    def decode(i: int) -> None:
        data = blob[offsets[i] : offsets[i + 1]].tobytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                a = np.asarray(im.convert("RGB"))
        except Exception as e:  # Pillow raises many types for broken data
            raise DataError(f"{path}: cannot decode {desc} mosaic {i} ({e}); file corrupt?") from e
        if a.shape != (side, side, 3):
            raise DataError(f"{path}: {desc} mosaic {i} is {a.shape}, expected {(side, side, 3)}")
        # row-major tiles, then HWC -> CHW so the cache loads straight into (N, 3, H, W)
        tiles = a.reshape(tile, _IMAGE_HW, tile, _IMAGE_HW, 3).transpose(0, 2, 4, 1, 3)
        out[i * per : (i + 1) * per] = tiles.reshape(per, 3, _IMAGE_HW, _IMAGE_HW)

    decode_all(decode, n_mosaics, desc=desc, unit="mosaic", show_progress=show_progress)
    return out[:count]


def _decode_packed(path: Path, show_progress: bool) -> dict[str, np.ndarray]:
    """Read and decode one packed npz into x_/y_ arrays; every failure is a DataError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            need = {
                "tile",
                *(f"{s}_{k}" for s in ("train", "test") for k in ("blob", "offsets", "count")),
            }
            need |= {"y_train", "y_test"}
            if missing := sorted(need - files):
                raise DataError(f"{path} is not a packed CIFAR file: keys {missing} missing")
            if "codec" in files and str(z["codec"]) != "webp":
                raise DataError(f"{path}: unsupported codec {str(z['codec'])!r} (expected webp)")
            tile = int(z["tile"])
            out: dict[str, np.ndarray] = {}
            for split in ("train", "test"):
                count = int(z[f"{split}_count"])
                x = _decode_mosaics(
                    path,
                    z[f"{split}_blob"],
                    z[f"{split}_offsets"],
                    count,
                    tile,
                    f"decode {path.stem} {split}",
                    show_progress,
                )
                out[f"x_{split}"] = x
                for key in (f"y_{split}", f"y_{split}_coarse"):
                    if key in files:
                        y = z[key].astype(np.int64)
                        if y.shape != (count,):
                            raise DataError(
                                f"{path}: {key} has shape {y.shape}, expected ({count},)"
                            )
                        out[key] = y
    except DataError:
        raise
    except Exception as e:  # zipfile/numpy raise many types for a broken archive
        raise DataError(
            f"cannot read {path}: {type(e).__name__}: {e}. The file is corrupt or truncated; "
            "copy it again."
        ) from e
    return out


def read_packed_cifar(
    path: Path, *, use_cache: bool = True, show_progress: bool = True
) -> dict[str, Any]:
    """Arrays of a packed CIFAR file: `x_train`, `y_train`, `x_test`, `y_test` (+ `*_coarse`).

    `x_*` are uint8 (N, 3, 32, 32). The file is checked against `SHA256SUMS` beside it when
    that lists it; the check and the decode are done once and remembered in the cache, whose
    entry is keyed by the file's path, size and mtime (and records its SHA-256).
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    expected = _expected_sha256(path)
    entry = _cache_entry(path, stat)
    if use_cache and (cached := _read_cache(entry, path, stat)) is not None:
        meta = cached.pop("meta")
        if expected is not None and expected != meta["sha256"]:
            raise _checksum_error(path, expected, meta["sha256"])
        return cached
    try:
        actual = sha256_file(path)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if expected is not None and expected != actual:
        raise _checksum_error(path, expected, actual)
    arrays = _decode_packed(path, show_progress)
    if use_cache:
        meta = {
            "format": _CACHE_FORMAT,
            "path": str(path.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": actual,
            "verified_against_sha256sums": expected is not None,
        }
        _write_cache(entry, arrays, meta)
    return arrays


def _labels_json(folder: Path, name: str, label_kind: str) -> list[str] | None:
    path = folder / "labels.json"
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())[name]
        names = entry["coarse_label_names" if label_kind == "coarse" else "label_names"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: no {label_kind} class names for {name} ({e!r})") from e
    return [str(n) for n in names]


def _builtin_classes(name: str, label_kind: str) -> list[str]:
    if name == "cifar10":
        return list(CIFAR10_CLASSES)
    return list(CIFAR100_COARSE_CLASSES if label_kind == "coarse" else CIFAR100_CLASSES)


def _splits_from_packed(path: Path, name: str, label_kind: str, show_progress: bool) -> RawSplits:
    arrays = read_packed_cifar(path, show_progress=show_progress)
    suffix = "_coarse" if label_kind == "coarse" else ""
    if f"y_train{suffix}" not in arrays:
        raise DataError(f"{path} has no {label_kind} labels")
    classes = _labels_json(path.parent, name, label_kind) or _builtin_classes(name, label_kind)
    return RawSplits(
        x_train=arrays["x_train"],
        y_train=arrays[f"y_train{suffix}"],
        x_test=arrays["x_test"],
        y_test=arrays[f"y_test{suffix}"],
        classes=classes,
        source=str(path),
    )


# --------------------------------------------------------------------------- torchvision folder


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except FileNotFoundError as e:
        raise DataError(f"{path} is missing; the folder {path.parent} is incomplete") from e
    except Exception as e:  # pickle raises many types for a broken file
        raise DataError(f"cannot read {path}: {type(e).__name__}: {e}; file corrupt?") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR batch (a {type(obj).__name__}, not a dict)")
    return obj


def read_torchvision_cifar(folder: Path, name: str, label_kind: str = "fine") -> RawSplits:
    """Read torchvision's `cifar-10-batches-py` / `cifar-100-python` folder (pickled batches)."""
    folder = Path(folder)
    train_files, test_files, meta_file = _TV_FILES[name]
    label_key = "labels" if name == "cifar10" else f"{label_kind}_labels"

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for fname in files:
            d = _unpickle(folder / fname)
            try:
                x = np.asarray(d["data"], dtype=np.uint8)
                y = np.asarray(d[label_key], dtype=np.int64)
                x = x.reshape(len(x), 3, _IMAGE_HW, _IMAGE_HW)
            except (KeyError, ValueError) as e:
                raise DataError(f"{folder / fname} is not a {name} batch ({e!r})") from e
            if len(x) != len(y):
                raise DataError(f"{folder / fname}: {len(x)} images but {len(y)} labels")
            xs.append(x)
            ys.append(y)
        return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)

    x_train, y_train = read(train_files)
    x_test, y_test = read(test_files)
    classes = _labels_json(folder.parent, name, label_kind)
    if classes is None and (folder / meta_file).is_file():
        meta = _unpickle(folder / meta_file)
        key = "label_names" if name == "cifar10" else f"{label_kind}_label_names"
        classes = [str(c) for c in meta.get(key, [])] or None
    return RawSplits(
        x_train, y_train, x_test, y_test, classes or _builtin_classes(name, label_kind), str(folder)
    )


def _download(folder: Path, name: str) -> None:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(root=str(folder), train=train, download=True)
    except Exception as e:  # network, disk, checksum: all reported the same way
        raise DataError(
            f"downloading {name} into {folder} failed: {type(e).__name__}: {e}. Without network "
            f"access, copy {_PACKED_FILE[name]} (+ SHA256SUMS, labels.json) into a folder and "
            "point CNNBENCH_DATA or --data-dir at it."
        ) from e


# --------------------------------------------------------------------------- entry point


def load_cifar(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    label_kind: str = "fine",
    show_progress: bool = True,
) -> RawSplits:
    """Find and read CIFAR-10/100 from the first source that exists (see the module doc)."""
    if name not in _PACKED_FILE:
        raise ValueError(f"unknown CIFAR dataset {name!r}; expected one of {sorted(_PACKED_FILE)}")
    if label_kind not in ("fine", "coarse"):
        raise ValueError(f"label_kind must be 'fine' or 'coarse', got {label_kind!r}")
    if name == "cifar10" and label_kind == "coarse":
        raise DataError("cifar10 has no coarse labels; label_kind='coarse' is for cifar100")
    folder = resolve_data_dir(data_dir)
    packed = folder / _PACKED_FILE[name]
    tv_folder = folder / _TV_FOLDER[name]
    if packed.is_file():
        return _splits_from_packed(packed, name, label_kind, show_progress)
    if tv_folder.is_dir():
        return read_torchvision_cifar(tv_folder, name, label_kind)
    if download:
        _download(folder, name)
        return read_torchvision_cifar(tv_folder, name, label_kind)
    raise DataError(
        f"{name} not found. Looked in the data folder {folder} (from {_where_from(data_dir)}) for:\n"
        f"  - {packed} (packed file)\n"
        f"  - {tv_folder}/ (torchvision folder)\n"
        "To fix: set CNNBENCH_DATA to a folder holding "
        f"{_PACKED_FILE[name]} or {_TV_FOLDER[name]}/, or pass --data-dir (data_dir=...), or "
        "pass --download (download=True) to fetch it with torchvision."
    )
