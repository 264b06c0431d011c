"""Read a folder of images, one sub-folder per class, into uint8 arrays.

Two layouts are accepted:

- `root/train/<class>/*` and `root/test/<class>/*` (`val/` or `valid/` stands in for a missing
  `test/`); with `train/` alone the test split is carved as below;
- `root/<class>/*`: a seeded, stratified 20 % of each class becomes the test split, and
  `source` says so.

Every image is decoded with Pillow at load time (a thread pool; Pillow releases the GIL),
converted to RGB (transparency flattened onto white) and resized to `image_size` x
`image_size` without keeping the aspect ratio (as torchvision's `Resize((s, s))`).
Unreadable files are skipped with one `DataWarning` that counts them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from cnnbench.data.decode_pool import decode_all
from cnnbench.data.sources import DataError, DataWarning, RawSplits

__all__ = ["IMAGE_EXTENSIONS", "TEST_FRACTION", "read_imagefolder"]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
TEST_FRACTION = 0.2  # of each class, when the folder has no test split
_TEST_NAMES = ("test", "val", "valid")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in class_dir.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _list(folder: Path, classes: list[str] | None) -> tuple[list[str], list[Path], list[int]]:
    """(classes, files, labels) of one split folder; `classes` given: the test split's."""
    dirs = _class_dirs(folder)
    if not dirs:
        raise DataError(
            f"no class folders in {folder}: expected {folder}/<class>/<image files> "
            "(or train/ and test/ folders holding those)"
        )
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    elif unknown := sorted(set(names) - set(classes)):
        raise DataError(f"{folder} has classes {unknown} that the train folder lacks")
    index = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        found = _image_files(d)
        files += found
        labels += [index[d.name]] * len(found)
    if not files:
        raise DataError(
            f"no image files in the class folders of {folder} "
            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return classes, files, labels


def _decode(path: Path, size: int) -> np.ndarray | None:
    """(3, size, size) uint8, or None if Pillow cannot read the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when possible
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im.alpha_composite(rgba)
            rgb = im.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb).transpose(2, 0, 1)
    except Exception:  # Pillow raises many types for a broken file; counted by the caller
        return None


def _read(
    files: list[Path], labels: list[int], size: int, desc: str, show_progress: bool
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    x = np.empty((len(files), 3, size, size), dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)

    def one(i: int) -> None:
        a = _decode(files[i], size)
        if a is not None:
            x[i] = a
            ok[i] = True

    decode_all(one, len(files), desc=desc, unit="img", show_progress=show_progress)
    bad = [f for f, good in zip(files, ok, strict=True) if not good]
    return x[ok], np.asarray(labels, dtype=np.int64)[ok], bad


def _stratified_test_split(
    y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx): `fraction` of each class (rounded, at least 1 of a class of 2+)."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        perm = idx[torch.randperm(len(idx), generator=g).numpy()]
        k = min(max(round(fraction * len(idx)), 1), len(idx) - 1) if len(idx) > 1 else 0
        test.append(perm[:k])
        train.append(perm[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def read_imagefolder(
    root: str | os.PathLike[str],
    *,
    image_size: int = 32,
    seed: int = 0,
    show_progress: bool = True,
) -> RawSplits:
    """Read an image folder (see the module doc); `seed` drives the carved test split."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (or is not a folder)")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    train_dir = root / "train"
    test_dir = next((root / n for n in _TEST_NAMES if (root / n).is_dir()), None)
    split_layout = train_dir.is_dir()
    classes, files, labels = _list(train_dir if split_layout else root, None)

    skipped: list[Path] = []
    x, y, bad = _read(files, labels, image_size, f"read {root.name} train", show_progress)
    skipped += bad
    if len(x) == 0:
        raise DataError(
            f"none of the {len(files)} image files under {root} could be read, e.g. {files[0]}"
        )
    if split_layout and test_dir is not None:
        _, test_files, test_labels = _list(test_dir, classes)
        x_test, y_test, bad = _read(
            test_files, test_labels, image_size, f"read {root.name} {test_dir.name}", show_progress
        )
        skipped += bad
        source = f"{root} (train: {train_dir.name}/, test: {test_dir.name}/)"
        x_train, y_train = x, y
    else:
        tr, te = _stratified_test_split(y, TEST_FRACTION, seed)
        x_train, y_train, x_test, y_test = x[tr], y[tr], x[te], y[te]
        where = "train/" if split_layout else "the class folders"
        source = (
            f"{root} (no test folder: test split = a stratified {TEST_FRACTION:.0%} of "
            f"each class of {where}, seed {seed})"
        )
    if skipped:
        examples = ", ".join(str(p) for p in skipped[:3])
        warnings.warn(
            f"skipped {len(skipped)} unreadable image file(s) in {root}, e.g. {examples}",
            DataWarning,
            stacklevel=2,
        )
    return RawSplits(
        np.ascontiguousarray(x_train),
        y_train,
        np.ascontiguousarray(x_test),
        y_test,
        classes,
        source,
    )
