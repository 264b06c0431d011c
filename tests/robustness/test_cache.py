"""Generation and the on-disk cache: seeded chunks, hits that return the same bytes without
generating, keys that change with what changes the images."""

from __future__ import annotations

import numpy as np
import pytest

from cnnbench.robustness import cache
from cnnbench.robustness.corruptions import corrupt


def test_cache_hit_returns_identical_arrays_without_generating(images, private_cache, monkeypatch):
    first, hit = cache.corrupted(images, "shot_noise", 2, seed=0, dataset="toy")
    assert not hit
    files = list((private_cache / "corrupted" / "toy").glob("shot_noise-s2-*.npy"))
    assert len(files) == 1

    def boom(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(cache, "_generate", boom)
    again, hit = cache.corrupted(images, "shot_noise", 2, seed=0, dataset="toy")
    assert hit and np.array_equal(again, first) and again.dtype == np.uint8


def test_seed_images_and_severity_make_their_own_entries(images):
    a, _ = cache.corrupted(images, "fog", 3, seed=0)
    b, hit_b = cache.corrupted(images, "fog", 3, seed=1)
    c, hit_c = cache.corrupted(images[::-1].copy(), "fog", 3, seed=0)
    d, hit_d = cache.corrupted(images, "fog", 4, seed=0)
    assert not (hit_b or hit_c or hit_d)
    assert not np.array_equal(a, b) and not np.array_equal(a, d)
    assert not np.array_equal(a[::-1], c)  # image i's draws depend on its place in the chunk
    digest = cache.images_digest(images)
    keys = {cache.cell_key(digest, len(images), "fog", 3, s) for s in (0, 1)}
    keys.add(cache.cell_key(digest, len(images), "fog", 4, 0))
    keys.add(cache.cell_key(cache.images_digest(images[::-1].copy()), len(images), "fog", 3, 0))
    assert len(keys) == 4


def test_same_seed_same_bytes_with_or_without_the_cache(images):
    cached, _ = cache.corrupted(images, "motion_blur", 4, seed=7)
    fresh, hit = cache.corrupted(images, "motion_blur", 4, seed=7, use_cache=False)
    assert not hit and np.array_equal(cached, fresh)


def test_chunks_have_their_own_generators(images, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK", 4)  # 6 images: chunks of 4 and 2
    out, _ = cache.corrupted(images, "gaussian_noise", 1, seed=3, use_cache=False)
    want = np.concatenate([
        corrupt(images[:4], "gaussian_noise", 1, cache.rng_for(3, "gaussian_noise", 1, 0)),
        corrupt(images[4:], "gaussian_noise", 1, cache.rng_for(3, "gaussian_noise", 1, 1)),
    ])  # fmt: skip
    assert np.array_equal(out, want)
    other = cache.rng_for(3, "shot_noise", 1, 0).random(4)
    assert not np.array_equal(cache.rng_for(3, "gaussian_noise", 1, 0).random(4), other)


def test_a_damaged_cache_file_is_regenerated(images, private_cache):
    first, _ = cache.corrupted(images, "pixelate", 5, seed=0, dataset="toy")
    (path,) = (private_cache / "corrupted" / "toy").glob("pixelate-s5-*.npy")
    path.write_bytes(b"not an array")
    again, hit = cache.corrupted(images, "pixelate", 5, seed=0, dataset="toy")
    assert not hit and np.array_equal(again, first)
    assert np.array_equal(np.load(path), first)  # and written back whole


def test_an_unwritable_cache_warns_and_still_returns(images, tmp_path, monkeypatch):
    from cnnbench.data import DataWarning

    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("CNNBENCH_CACHE", str(blocker))  # a file where the folder would be
    with pytest.warns(DataWarning, match="could not cache"):
        out, hit = cache.corrupted(images, "contrast", 1, seed=0)
    assert not hit and out.shape == images.shape
