"""Camera-degradation augmentation: seeded, batched, touching only the images it picks."""

from __future__ import annotations

import pytest
import torch

from cnnbench.data import BatchIterator, Degrade

STD = torch.tensor([0.25, 0.25, 0.25])


def _batch(n: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_same_seed_same_batch_other_seed_other_batch():
    d = Degrade("noise-blur", p=0.5)
    x = _batch()
    a = d(x, STD, torch.Generator().manual_seed(3))
    b = d(x, STD, torch.Generator().manual_seed(3))
    c = d(x, STD, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_noise_hits_about_p_of_the_images_and_leaves_the_rest():
    x = _batch(400)
    out = Degrade("noise", p=0.25)(x, STD, torch.Generator().manual_seed(0))
    changed = (out - x).flatten(1).abs().amax(1) > 0
    assert 60 <= int(changed.sum()) <= 140  # binomial(400, 0.25): mean 100, sd 8.7
    assert torch.equal(out[~changed], x[~changed])


def test_noise_scale_is_in_pixel_units_through_the_normalisation():
    x = torch.zeros(2000, 3, 8, 8)
    out = Degrade("noise", p=1.0, noise_std=0.1)(x, STD, torch.Generator().manual_seed(0))
    # std ~ U(0, 0.1) pixels, i.e. U(0, 0.4) after dividing by the normalisation's 0.25:
    # the pooled std is sqrt(E[s^2]) = 0.4 / sqrt(3).
    assert out.std().item() == pytest.approx(0.4 / 3**0.5, rel=0.05)


def test_blur_smooths_and_keeps_the_mean():
    x = _batch(32)
    out = Degrade("blur", p=1.0)(x, STD, torch.Generator().manual_seed(0))
    grad = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert grad(out) < 0.8 * grad(x)
    assert out.mean().item() == pytest.approx(x.mean().item(), abs=0.05)


def test_iterator_passes_are_reproducible_from_the_generator_state():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(64) % 10
    it = BatchIterator(x, y, 16, shuffle=True, mean=[0.5] * 3, std=[0.25] * 3,
                       generator=torch.Generator().manual_seed(0), degrade=Degrade("noise"))  # fmt: skip
    state = it.generator.get_state()
    first = [b for b, _ in it]
    it.generator.set_state(state)
    again = [b for b, _ in it]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    plain = BatchIterator(x, y, 16, shuffle=True, mean=[0.5] * 3, std=[0.25] * 3,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert not all(torch.equal(a, b) for (a, _), b in zip(plain, first, strict=True))


@pytest.mark.parametrize("bad", [{"kinds": "fog"}, {"kinds": "noise", "p": 0.0},
                                 {"kinds": "blur", "blur_sigma": 0.1}])  # fmt: skip
def test_rejects_bad_settings(bad):
    kinds = bad.pop("kinds")
    with pytest.raises(ValueError):
        Degrade(kinds, **bad)
