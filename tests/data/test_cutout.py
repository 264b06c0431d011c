"""Cutout: one square per image, at the drawn place, clipped at the border, batched, seeded."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.data import BatchIterator, Cutout
from cnnbench.train.config import RunConfig


def _reference_mask(size: int, cy: int, cx: int, h: int, w: int) -> torch.Tensor:
    """The square a loop over pixels would cut (the definition, written out)."""
    m = torch.zeros(h, w, dtype=torch.bool)
    for r in range(h):
        for c in range(w):
            m[r, c] = cy - size // 2 <= r < cy - size // 2 + size and \
                      cx - size // 2 <= c < cx - size // 2 + size  # fmt: skip
    return m


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 12), cy=st.integers(0, 9), cx=st.integers(0, 11))
def test_mask_is_the_clipped_square_around_the_centre(size, cy, cx):
    m = Cutout(size).mask(torch.tensor([[cy, cx]]), 10, 12)
    assert m.shape == (1, 1, 10, 12)
    assert torch.equal(m[0, 0], _reference_mask(size, cy, cx, 10, 12))


def test_apply_zeroes_only_the_square_in_every_channel():
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    centres = torch.tensor([[0, 0], [8, 8], [15, 3]])
    out = Cutout(6).apply(x, centres)
    for i, (cy, cx) in enumerate(centres.tolist()):
        m = _reference_mask(6, cy, cx, 16, 16)
        assert (out[i][:, m] == 0).all()
        assert torch.equal(out[i][:, ~m], x[i][:, ~m])
    assert int(_reference_mask(6, 8, 8, 16, 16).sum()) == 36  # inside: the whole square
    assert int(_reference_mask(6, 0, 0, 16, 16).sum()) == 9  # at a corner: a quarter
    with pytest.raises(ValueError):
        Cutout(6).apply(x, centres[:2])


def test_centres_cover_the_image_uniformly():
    c = Cutout(4).sample(20_000, 8, 4, torch.Generator().manual_seed(0))
    assert c.shape == (20_000, 2) and c.dtype == torch.int64
    rows = torch.bincount(c[:, 0], minlength=8)
    cols = torch.bincount(c[:, 1], minlength=4)
    assert len(rows) == 8 and len(cols) == 4
    assert rows.min() > 2_200 and rows.max() < 2_800  # 2,500 each, sd 47
    assert cols.min() > 4_700 and cols.max() < 5_300  # 5,000 each, sd 61


def test_bad_size_refused():
    with pytest.raises(ValueError, match="cutout size"):
        Cutout(0)
    with pytest.raises(ValueError):
        RunConfig(model="lenet5", cutout=-1)


def _iterator(x, y, cutout, shard=None, seed=0):
    return BatchIterator(x, y, 16, shuffle=True, mean=[0.5] * 3, std=[0.25] * 3,
                         generator=torch.Generator().manual_seed(seed), cutout=cutout,
                         shard=shard)  # fmt: skip


def test_iterator_cuts_every_image_reproducibly_and_shards_see_the_same_squares():
    x = torch.full((64, 3, 8, 8), 255, dtype=torch.uint8)  # normalised: 2.0 everywhere
    y = torch.arange(64) % 10
    it = _iterator(x, y, Cutout(4))
    state = it.generator.get_state()
    first = [b for b, _ in it]
    zeros = torch.cat(first).eq(0).all(1).flatten(1).sum(1)  # cut pixels per image
    assert zeros.min() >= 4 and zeros.max() <= 16  # a corner quarter up to the full square
    kept = torch.cat(first)[torch.cat(first) != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0))
    it.generator.set_state(state)
    assert all(torch.equal(a, b) for a, b in zip(first, [b for b, _ in it], strict=True))
    halves = [[b for b, _ in _iterator(x, y, Cutout(4), shard=(r, 2))] for r in (0, 1)]
    for whole, a, b in zip(first, *halves, strict=True):
        assert torch.equal(whole[0::2], a) and torch.equal(whole[1::2], b)
    other = [b for b, _ in _iterator(x, y, Cutout(4), seed=1)]
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_without_cutout_the_stream_is_unchanged():
    """Off (the default), the iterator draws exactly what it drew before cutout existed."""
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(64) % 10
    it = _iterator(x, y, None)
    list(it)
    plain = torch.Generator().manual_seed(0)
    torch.randperm(64, generator=plain)
    assert torch.equal(it.generator.get_state(), plain.get_state())
