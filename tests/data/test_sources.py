"""Locating and reading CIFAR: packed files, checksums, the cache, torchvision folders."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnbench.data import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    DataError,
    ImageDataset,
    cache_dir,
    channel_mean_std,
    load_dataset,
    resolve_data_dir,
)
from cnnbench.data.sources import read_packed_cifar

# shared/data/README.md, "Figures to check a reader against": (mean RGB, std RGB) in [0, 1]
README_STATS = {
    ("cifar10", "train"): ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ("cifar10", "test"): ((0.4942, 0.4851, 0.4504), (0.2466, 0.2429, 0.2616)),
    ("cifar100", "train"): ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    ("cifar100", "test"): ((0.5088, 0.4874, 0.4419), (0.2683, 0.2574, 0.2771)),
}


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_statistics_match_readme(name: str, request: pytest.FixtureRequest) -> None:
    ds: ImageDataset = request.getfixturevalue(name)
    for split, (mean, std) in (("train", ds.mean_std()), ("test", channel_mean_std(ds.x_test))):
        ref_mean, ref_std = README_STATS[(name, split)]
        assert [round(v, 4) for v in mean] == list(ref_mean), (name, split, mean)
        assert [round(v, 4) for v in std] == list(ref_std), (name, split, std)
    assert ds.mean_std() is ds.mean_std()  # cached


@pytest.mark.parametrize(
    ("name", "n_classes", "per_train", "per_test"),
    [("cifar10", 10, 5000, 1000), ("cifar100", 100, 500, 100)],
)
def test_shapes_and_class_counts(
    name: str, n_classes: int, per_train: int, per_test: int, request: pytest.FixtureRequest
) -> None:
    ds: ImageDataset = request.getfixturevalue(name)
    assert ds.x_train.shape == (50_000, 3, 32, 32) and ds.x_test.shape == (10_000, 3, 32, 32)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.x_train.is_contiguous() and ds.x_test.is_contiguous()
    assert ds.num_classes == n_classes and ds.image_size == 32
    assert torch.bincount(ds.y_train).tolist() == [per_train] * n_classes
    assert torch.bincount(ds.y_test).tolist() == [per_test] * n_classes
    assert ds.source.endswith(f"{name}.npz")


def test_labels_json_names_and_builtin_constants(
    real_data_dir: Path, cifar10: ImageDataset, cifar100: ImageDataset
) -> None:
    labels = json.loads((real_data_dir / "labels.json").read_text())
    assert cifar10.classes == labels["cifar10"]["label_names"] == list(CIFAR10_CLASSES)
    assert cifar100.classes == labels["cifar100"]["label_names"] == list(CIFAR100_CLASSES)
    assert labels["cifar100"]["coarse_label_names"] == list(CIFAR100_COARSE_CLASSES)


def test_cifar100_coarse_labels(real_data_dir: Path, cifar100: ImageDataset) -> None:
    ds = load_dataset("cifar100", data_dir=real_data_dir, label_kind="coarse", show_progress=False)
    assert ds.classes == list(CIFAR100_COARSE_CLASSES)
    assert torch.bincount(ds.y_train).tolist() == [2500] * 20
    assert torch.equal(ds.x_train, cifar100.x_train)
    # every fine class sits inside one superclass
    pairs = torch.unique(cifar100.y_train * 100 + ds.y_train)
    assert len(pairs) == 100


def test_second_load_comes_from_the_cache(real_data_dir: Path, cifar10: ImageDataset) -> None:
    entries = list((cache_dir() / "decoded").glob("cifar10-*"))
    assert len(entries) == 1
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["verified_against_sha256sums"] is True
    assert meta["size"] == (real_data_dir / "cifar10.npz").stat().st_size
    again = load_dataset("cifar10", data_dir=real_data_dir, show_progress=False)
    assert torch.equal(again.x_train, cifar10.x_train)
    assert torch.equal(again.y_test, cifar10.y_test)


def test_checksum_mismatch_names_the_file(real_data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cifar10.npz"
    shutil.copyfile(real_data_dir / "cifar10.npz", bad)
    shutil.copyfile(real_data_dir / "SHA256SUMS", tmp_path / "SHA256SUMS")
    with open(bad, "r+b") as f:  # flip one byte in the middle of the pixel data
        f.seek(50_000_000)
        byte = f.read(1)
        f.seek(50_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_dataset("cifar10", data_dir=tmp_path, show_progress=False)
    assert str(bad) in str(err.value)


@pytest.mark.parametrize("with_sums", [True, False])
def test_truncated_npz_is_a_clear_error(
    real_data_dir: Path, tmp_path: Path, with_sums: bool
) -> None:
    bad = tmp_path / "cifar100.npz"
    with open(real_data_dir / "cifar100.npz", "rb") as f:
        bad.write_bytes(f.read(1_000_000))
    if with_sums:
        shutil.copyfile(real_data_dir / "SHA256SUMS", tmp_path / "SHA256SUMS")
    with pytest.raises(DataError) as err:
        load_dataset("cifar100", data_dir=tmp_path, show_progress=False)
    assert str(bad) in str(err.value)
    assert ("checksum mismatch" in str(err.value)) == with_sums


# --------------------------------------------------------------------------- synthetic files


def test_packed_roundtrip_cache_and_invalidation(tmp_path: Path, make_packed_npz) -> None:
    x_tr, y_tr = _images(11, 0), np.arange(11) % 10
    x_te, y_te = _images(5, 1), np.arange(5)
    path = tmp_path / "cifar10.npz"
    make_packed_npz(path, {"train": (x_tr, y_tr), "test": (x_te, y_te)})

    ds = load_dataset("cifar10", data_dir=tmp_path, show_progress=False)
    assert np.array_equal(ds.x_train.numpy(), x_tr) and np.array_equal(ds.x_test.numpy(), x_te)
    assert ds.y_train.tolist() == y_tr.tolist()
    assert ds.classes == list(CIFAR10_CLASSES)  # no labels.json: built-in names

    (entry,) = [
        p
        for p in (cache_dir() / "decoded").glob("cifar10-*")
        if str(path) in (p / "meta.json").read_text()
    ]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["verified_against_sha256sums"] is False and len(meta["sha256"]) == 64
    # a cache hit reads the cache, not the file: prove it by poisoning the cached array
    np.save(entry / "x_test.npy", np.zeros_like(x_te))
    assert load_dataset("cifar10", data_dir=tmp_path, show_progress=False).x_test.sum() == 0
    # a new mtime is a new file: decoded again
    os.utime(path, ns=(meta["mtime_ns"] + 10**9, meta["mtime_ns"] + 10**9))
    assert np.array_equal(load_dataset("cifar10", data_dir=tmp_path).x_test.numpy(), x_te)


def test_labels_json_beside_the_packed_file(tmp_path: Path, make_packed_npz) -> None:
    x, y = _images(4, 0), np.arange(4)
    make_packed_npz(tmp_path / "cifar10.npz", {"train": (x, y), "test": (x, y)})
    names = [f"c{i}" for i in range(10)]
    (tmp_path / "labels.json").write_text(json.dumps({"cifar10": {"label_names": names}}))
    assert load_dataset("cifar10", data_dir=tmp_path, show_progress=False).classes == names


def test_undecodable_webp_names_the_file(tmp_path: Path, make_packed_npz) -> None:
    path = tmp_path / "cifar10.npz"
    x, y = _images(4, 0), np.arange(4)
    make_packed_npz(path, {"train": (x, y), "test": (x, y)})
    with np.load(path) as z:
        arrays = dict(z)
    arrays["train_blob"] = np.full_like(arrays["train_blob"], 7)
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="cannot decode") as err:
        load_dataset("cifar10", data_dir=tmp_path, show_progress=False)
    assert str(path) in str(err.value)


def test_missing_keys_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cifar10.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(DataError, match="not a packed CIFAR file") as err:
        read_packed_cifar(path, show_progress=False)
    assert str(path) in str(err.value)


def test_no_data_anywhere_says_where_and_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CNNBENCH_DATA", raising=False)
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    assert resolve_data_dir() == tmp_path / "cache" / "data"
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", show_progress=False)
    msg = str(err.value)
    assert str(tmp_path / "cache" / "data" / "cifar10.npz") in msg
    assert str(tmp_path / "cache" / "data" / "cifar-10-batches-py") in msg
    assert "CNNBENCH_DATA" in msg and "--download" in msg and "--data-dir" in msg


def test_resolve_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"


def test_torchvision_folder(tmp_path: Path, make_torchvision_cifar10) -> None:
    x_tr, y_tr = _images(12, 0), np.arange(12) % 10
    x_te, y_te = _images(3, 1), np.array([9, 0, 4])
    folder = make_torchvision_cifar10(tmp_path, x_tr, y_tr, x_te, y_te)
    ds = load_dataset("cifar10", data_dir=tmp_path, show_progress=False)
    assert ds.source == str(folder)
    assert np.array_equal(ds.x_train.numpy(), x_tr) and ds.y_train.tolist() == y_tr.tolist()
    assert np.array_equal(ds.x_test.numpy(), x_te) and ds.y_test.tolist() == y_te.tolist()
    assert ds.classes == [f"tv_class_{i}" for i in range(10)]  # from batches.meta


def test_torchvision_cifar100_folder_coarse(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x = _images(6, 0)
    for split in ("train", "test"):
        batch = {
            "data": x.reshape(6, -1),
            "fine_labels": [0, 1, 2, 3, 4, 99],
            "coarse_labels": [4, 1, 14, 8, 0, 13],
        }
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
    coarse = load_dataset("cifar100", data_dir=tmp_path, label_kind="coarse", show_progress=False)
    assert coarse.y_train.tolist() == [4, 1, 14, 8, 0, 13]
    assert coarse.classes == list(CIFAR100_COARSE_CLASSES)  # no meta file: built-ins
    fine = load_dataset("cifar100", data_dir=tmp_path, show_progress=False)
    assert fine.y_test.tolist() == [0, 1, 2, 3, 4, 99] and fine.num_classes == 100


def test_packed_file_wins_over_torchvision_folder(
    tmp_path: Path, make_packed_npz, make_torchvision_cifar10
) -> None:
    x, y = _images(4, 0), np.arange(4)
    make_torchvision_cifar10(tmp_path, _images(5, 1), np.arange(5), x, y)
    make_packed_npz(tmp_path / "cifar10.npz", {"train": (x, y), "test": (x, y)})
    assert load_dataset("cifar10", data_dir=tmp_path, show_progress=False).source.endswith(".npz")


def test_corrupt_torchvision_batch_names_the_file(tmp_path: Path, make_torchvision_cifar10) -> None:
    folder = make_torchvision_cifar10(
        tmp_path, _images(5, 0), np.arange(5), _images(1, 1), np.arange(1)
    )
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", data_dir=tmp_path, show_progress=False)


def test_bad_names_and_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="coarse"):
        load_dataset("cifar10", data_dir=tmp_path, label_kind="coarse")
    with pytest.raises(DataError, match="32x32"):
        load_dataset("cifar10", data_dir=tmp_path, image_size=64)


def test_failed_download_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    # a stand-in torchvision: the real import costs seconds and its download needs a network
    fake = types.SimpleNamespace(datasets=types.SimpleNamespace(CIFAR10=offline, CIFAR100=offline))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    with pytest.raises(DataError, match=r"downloading cifar10 into .* failed") as err:
        load_dataset("cifar10", data_dir=tmp_path / "dl", download=True, show_progress=False)
    assert "CNNBENCH_DATA" in str(err.value) and isinstance(err.value.__cause__, OSError)
