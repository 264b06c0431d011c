"""The 15 corruptions: shape and dtype, seeding, strength growing with severity, the
protocol's constants, and the helpers against the scipy functions the protocol used."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cnnbench.robustness import CORRUPTIONS, GROUPS, SEVERITIES
from cnnbench.robustness import corruptions as C

# Corruptions that draw no random number (the same output for every generator).
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression"}  # fmt: skip


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_the_protocol_is_15_corruptions_in_4_groups():
    assert len(CORRUPTIONS) == 15 and tuple(C.CORRUPT) == CORRUPTIONS
    assert [len(v) for v in GROUPS.values()] == [3, 4, 3, 5]
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_keeps_shape_and_dtype_and_changes_the_image(name, images):
    for s in SEVERITIES:
        out = C.corrupt(images, name, s, np.random.default_rng(0))
        assert out.shape == images.shape and out.dtype == np.uint8
        assert out.flags.c_contiguous or out.flags.f_contiguous
        if s >= 3:
            assert not np.array_equal(out, images), f"{name} severity {s} did nothing"
    assert C.corrupt(images[:0], name, 1, np.random.default_rng(0)).shape == (0, 32, 32, 3)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_generator_same_bytes_and_another_seed_differs(name, images):
    a = C.corrupt(images, name, 3, np.random.default_rng(1))
    b = C.corrupt(images, name, 3, np.random.default_rng(1))
    c = C.corrupt(images, name, 3, np.random.default_rng(2))
    assert np.array_equal(a, b)
    if name in DETERMINISTIC:
        assert np.array_equal(a, c)
    else:
        assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "name", [*GROUPS["noise"], "defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate"]
)
def test_strength_grows_with_severity(name, make_images):
    x = make_images(16, seed=3)
    mad = [_mad(C.corrupt(x, name, s, np.random.default_rng(0)), x) for s in SEVERITIES]
    assert all(lo < hi for lo, hi in itertools.pairwise(mad)), mad


def test_noise_uses_the_cifar_constants_not_imagenets():
    flat = np.full((64, 32, 32, 3), 128, np.uint8)
    for s, sigma in zip(SEVERITIES, (0.04, 0.06, 0.08, 0.09, 0.10), strict=True):
        out = C.corrupt(flat, "gaussian_noise", s, np.random.default_rng(s))
        # truncation to uint8 lowers the mean by half a level, not the spread
        assert np.std(out / 255.0) == pytest.approx(sigma, rel=0.03)
    hit = C.corrupt(flat, "impulse_noise", 5, np.random.default_rng(0))
    assert np.isin(hit, (0, 128, 255)).all()
    assert (hit != 128).mean() == pytest.approx(0.07, abs=0.005)  # CIFAR-10-C's 7 %


def test_contrast_keeps_each_channel_mean():
    x = np.random.default_rng(0).integers(60, 200, (4, 32, 32, 3), dtype=np.uint8)
    out = C.corrupt(x, "contrast", 5, np.random.default_rng(0))
    assert np.allclose(out.mean((1, 2)), x.mean((1, 2)), atol=1.0)  # truncation: < 1 level
    assert out.std() < 0.2 * x.std()


def test_brightness_is_the_hsv_value_shift():
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    x[0, :4, :4] = 0  # black pixels have no hue: they turn grey
    out = C.corrupt(x, "brightness", 4, np.random.default_rng(0))
    hsv = rgb_to_hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.2, 0, 1)
    want = (np.clip(hsv_to_rgb(hsv), 0, 1) * 255).astype(np.uint8)
    diff = np.abs(out.astype(int) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05  # float rounding before truncation
    assert (out[0, :4, :4] == int(0.2 * 255)).all()


def test_clipped_zoom_is_scipy_zoom_of_each_image(images):
    f = images.astype(np.float32) / 255
    for factor in (1.0, 1.07, 1.25, 1.75, 2.25):
        h = 32
        ch = int(np.ceil(h / factor))
        top = (h - ch) // 2
        want = []
        for img in f:
            z = ndimage.zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
            trim = (z.shape[0] - h) // 2
            want.append(z[trim : trim + h, trim : trim + h])
        np.testing.assert_allclose(C._clipped_zoom(f, factor), np.stack(want), atol=2e-6)


@pytest.mark.parametrize("mode", ["reflect", "mirror"])
def test_bilinear_sampling_is_scipy_map_coordinates(mode):
    rng = np.random.default_rng(0)
    img = rng.random((2, 32, 32, 3)).astype(np.float32)
    rows, cols = rng.uniform(-40, 72, (2, 32, 32)), rng.uniform(-3, 35, (2, 32, 32))
    want = np.stack([
        np.stack([ndimage.map_coordinates(img[i, ..., c], (rows[i], cols[i]), order=1, mode=mode)
                  for c in range(3)], -1)
        for i in range(2)
    ])  # fmt: skip
    np.testing.assert_allclose(C._sample(img, rows, cols, mode), want, atol=1e-6)


def test_motion_blur_kernel_is_one_sided_and_normalised():
    x = np.zeros((1, 32, 32, 1), np.uint8)
    x[0, 16, 16] = 255
    out = C._motion_blur(x, 6, 2, np.zeros(1))  # angle 0: along +x, reading to the right
    row = out[0, 16, :, 0]
    assert row[16] == row.max() and row[17:].sum() == 0  # the streak trails to the left
    assert abs(int(out.sum()) - 255) <= 13  # the kernel sums to one (up to rounding)


def test_glass_blur_copies_as_the_original_does():
    # the protocol's "swap" copies a neighbour onto each pixel: no value is created, and at
    # sigma 0.05 (no blur) the output holds only values of the input
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out = C.corrupt(x, "glass_blur", 1, np.random.default_rng(0))
    for a, b in zip(out, x, strict=True):
        assert set(map(tuple, a.reshape(-1, 3))) <= set(map(tuple, b.reshape(-1, 3)))
        # a true swap would keep every pixel exactly once; copying duplicates some
        assert sorted(map(tuple, a.reshape(-1, 3))) != sorted(map(tuple, b.reshape(-1, 3)))


def test_frost_textures_are_shipped_at_cifar_scale():
    tex = C.frost_textures()
    assert [t.shape for t in tex] == [(120, 180, 3), (63, 112, 3), (63, 112, 3), (70, 105, 3),
                                      (99, 132, 3)]  # fmt: skip
    assert all(t.dtype == np.uint8 for t in tex)
    spec = importlib.util.find_spec("imagecorruptions")  # found without importing it
    if spec is None or not spec.submodule_search_locations:
        return  # the package that holds the full-size textures is optional
    folder = Path(next(iter(spec.submodule_search_locations))) / "frost"
    rebuilt = C.build_frost_textures(folder)
    for i, t in enumerate(tex):
        assert np.array_equal(rebuilt[f"frost{i + 1}"], t)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("snowing", 1), "unknown corruption"),
        (("fog", 0), "severity"),
        (("fog", 6), "severity"),
    ],
)
def test_bad_arguments_are_refused(images, args, match):
    with pytest.raises(ValueError, match=match):
        C.corrupt(images, *args, np.random.default_rng(0))


def test_other_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        C.corrupt(np.zeros((2, 3, 32, 32), np.uint8), "fog", 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        C.corrupt(np.zeros((2, 32, 32, 3)), "fog", 1, np.random.default_rng(0))
