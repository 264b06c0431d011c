"""Batched augmentation, normalisation and the batch iterator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.data import Augment, AugmentParams, BatchIterator, normalize

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _batch(b: int = 8, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=g)


def _reference(x: torch.Tensor, aug: Augment, params: AugmentParams) -> torch.Tensor:
    """The same augmentation, one image at a time: pad with F.pad, slice, flip."""
    p = aug.crop_padding
    mode = "reflect" if aug.padding_mode == "reflect" else "constant"
    out = []
    _, _, h, w = x.shape
    for i in range(len(x)):
        img = x[i : i + 1].float()
        if p:
            img = F.pad(img, (p, p, p, p), mode=mode)
        dy, dx = int(params.dy[i]), int(params.dx[i])
        crop = img[0, :, dy : dy + h, dx : dx + w]
        out.append(crop.flip(-1) if params.flip[i] else crop)
    return torch.stack(out).to(torch.uint8)


@pytest.mark.parametrize("padding_mode", ["reflect", "zeros"])
def test_crop_equals_manual_crop_of_padded_image(padding_mode: str) -> None:
    x = _batch(16)
    aug = Augment(crop_padding=4, flip=True, padding_mode=padding_mode)
    params = aug.sample(len(x), torch.Generator().manual_seed(1))
    out = aug.apply(x, params)
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.is_contiguous()
    assert torch.equal(out, _reference(x, aug, params))
    assert params.flip.any() and not params.flip.all()
    assert len(set(params.dy.tolist())) > 1


def test_identity_without_padding_and_flip() -> None:
    x = _batch()
    assert torch.equal(Augment(crop_padding=0, flip=False)(x, torch.Generator()), x)


def test_flip_only_flips() -> None:
    x = _batch(32)
    aug = Augment(crop_padding=0, flip=True)
    params = aug.sample(len(x), torch.Generator().manual_seed(0))
    out = aug.apply(x, params)
    assert torch.equal(out[params.flip], x[params.flip].flip(-1))
    assert torch.equal(out[~params.flip], x[~params.flip])
    assert 0 < int(params.flip.sum()) < len(x)


def test_same_seed_same_result() -> None:
    x = _batch()
    aug = Augment()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Augment(padding_mode="circular")
    with pytest.raises(ValueError):
        Augment(crop_padding=-1)
    with pytest.raises(ValueError, match="reflect"):
        Augment(crop_padding=4)(_batch(2, h=4, w=4), torch.Generator())


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 4),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    padding=st.integers(0, 5),
    flip=st.booleans(),
    zeros=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_augment_matches_reference_on_random_shapes(
    b: int, c: int, h: int, w: int, padding: int, flip: bool, zeros: bool, seed: int
) -> None:
    if not zeros:
        padding = min(padding, h - 1, w - 1)  # reflect needs padding < size
    aug = Augment(crop_padding=padding, flip=flip, padding_mode="zeros" if zeros else "reflect")
    x = _batch(b, c, h, w, seed=seed % 1000)
    params = aug.sample(b, torch.Generator().manual_seed(seed))
    out = aug.apply(x, params)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, _reference(x, aug, params))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_on_cuda_equals_cpu() -> None:
    x = _batch(64)
    for mode in ("reflect", "zeros"):
        aug = Augment(padding_mode=mode)
        params = aug.sample(len(x), torch.Generator().manual_seed(0))
        assert torch.equal(aug.apply(x.cuda(), params).cpu(), aug.apply(x, params))
    it = BatchIterator(
        x.cuda(), torch.arange(64).cuda(), 16, shuffle=True, augment=Augment(), mean=MEAN, std=STD,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    xb, yb = next(iter(it))
    assert xb.is_cuda and yb.is_cuda and xb.dtype == torch.float32


# --------------------------------------------------------------------------- normalize


def test_normalize() -> None:
    x = _batch(4)
    out = normalize(x, MEAN, STD)
    ref = (
        x.double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    ) / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.allclose(out.double(), ref, atol=1e-5)
    cl = normalize(x, MEAN, STD, channels_last=True, dtype=torch.bfloat16)
    assert cl.dtype == torch.bfloat16 and cl.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError):
        normalize(x.float(), MEAN, STD)


# --------------------------------------------------------------------------- BatchIterator


def _iterator(n: int = 103, seed: int = 0, **kw) -> BatchIterator:
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    kw = {
        "shuffle": True,
        "augment": Augment(crop_padding=1),
        "generator": torch.Generator().manual_seed(seed),
        **kw,
    }
    return BatchIterator(x, torch.arange(n), 16, mean=MEAN, std=STD, **kw)


def test_every_index_exactly_once_per_epoch() -> None:
    it = _iterator()
    assert len(it) == 7
    for _ in range(2):
        ys = [y for _, y in it]
        assert [len(y) for y in ys] == [16] * 6 + [7]
        assert torch.equal(torch.sort(torch.cat(ys)).values, torch.arange(103))
    first, second = [torch.cat([y for _, y in it]) for _ in range(2)]
    assert not torch.equal(first, second)  # a new order each epoch
    assert not torch.equal(first, torch.arange(103))


def test_batches_match_labels_and_normalisation() -> None:
    it = _iterator(augment=None)
    for xb, yb in it:
        # the image of sample i has value i everywhere
        expected = normalize(yb.to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4), MEAN, STD)
        assert torch.allclose(xb, expected)


def test_drop_last_indices_and_order() -> None:
    it = _iterator(drop_last=True)
    assert len(it) == 6 and sum(len(y) for _, y in it) == 96
    sub = _iterator(indices=torch.tensor([5, 7, 11, 13]), shuffle=False, augment=None)
    assert len(sub) == 1 and next(iter(sub))[1].tolist() == [5, 7, 11, 13]
    plain = _iterator(shuffle=False, augment=None, generator=None)
    assert torch.equal(torch.cat([y for _, y in plain]), torch.arange(103))
    with pytest.raises(ValueError, match="Generator"):
        BatchIterator(
            torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
            torch.zeros(2),
            1,
            shuffle=True,
            mean=MEAN,
            std=STD,
        )


def test_reproducible_from_generator_state() -> None:
    a, b = _iterator(seed=3), _iterator(seed=3)
    for _ in range(2):
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # resume: restore the generator state saved between epochs and replay the next epoch
    c = _iterator(seed=3)
    list(c)
    state = c.generator.get_state()
    expected = [(x.clone(), y.clone()) for x, y in c]
    d = _iterator(seed=99)
    d.generator.set_state(state)
    for (xe, ye), (xd, yd) in zip(expected, d, strict=True):
        assert torch.equal(xe, xd) and torch.equal(ye, yd)
    # an epoch consumes the same randomness however many batches are taken
    e, f = _iterator(seed=4), _iterator(seed=4)
    next(iter(e))
    list(f)
    assert torch.equal(e.generator.get_state(), f.generator.get_state())


def test_channels_last_output() -> None:
    xb, _ = next(iter(_iterator(channels_last=True)))
    assert xb.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("world", [2, 3])
def test_shards_partition_each_batch(world: int) -> None:
    """The ranks of a DDP job together see exactly the single-process batches."""
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(50)
    kw = {"shuffle": True, "mean": (0.5,) * 3, "std": (0.25,) * 3, "augment": Augment(2)}

    def batches(shard=None):
        g = torch.Generator().manual_seed(7)
        return list(BatchIterator(x, y, 16, generator=g, shard=shard, **kw))

    full = batches()
    parts = [batches((rank, world)) for rank in range(world)]
    for i, (xb, yb) in enumerate(full):
        ys = torch.cat([p[i][1] for p in parts])
        xs = torch.cat([p[i][0] for p in parts])
        order = ys.argsort()
        assert torch.equal(ys[order], yb.sort().values)
        assert torch.equal(xs[order], xb[yb.argsort()])
    with pytest.raises(ValueError, match="shard"):
        BatchIterator(x, y, 16, generator=torch.Generator(), shard=(2, 2), **kw)
