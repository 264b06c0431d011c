"""The 15 CIFAR-10-C corruptions, batched over images and seeded by a numpy Generator.

Each corruption is the definition of Hendrycks' ``make_cifar_c.py`` (the script that made
CIFAR-10-C / CIFAR-100-C) with its constants for 32x32 images, re-implemented here with numpy,
scipy and Pillow only, on a whole batch ``(N, 32, 32, 3)`` uint8 at once, drawing every random
number from the ``numpy.random.Generator`` passed in (never the global ``np.random``). Results
are truncated to uint8 as the original's ``np.uint8(...)``.

Why not the ``imagecorruptions`` package: it implements the ImageNet-C definitions with
ImageNet-C constants (tuned for 224 px images; e.g. gaussian_noise sigma 0.08..0.38 where
CIFAR-10-C uses 0.04..0.10, and a frost crop taken from the full-size texture), and its last
release (1.1.2, 2020) no longer imports with setuptools >= 81 (``pkg_resources``), fails in
``fog`` on numpy 2 (``np.float_``) and in ``glass_blur`` on scikit-image >= 0.19
(``multichannel=``). Its glass_blur is a per-pixel Python loop per image.

Exact and not exact, against ``make_cifar_c.py`` (the bytes of CIFAR-10-C cannot be
reproduced by anyone: it was generated from an unseeded global RNG):

* Same definition and constants, same arithmetic: gaussian_noise, shot_noise,
  impulse_noise (scikit-image's ``random_noise('s&p')``: each value flipped with probability
  ``amount``, half to 0, half to 1), defocus_blur (the anti-aliased disk kernel, OpenCV's
  reflect-101 border), glass_blur (the same sequential local pixel "swaps", which copy a
  neighbour as the original's numpy-view swap does, done for all images of a batch at each
  step: 30x faster than its per-pixel loop), zoom_blur (same zoom factors, including ``np.arange``'s extra
  last factor at severity 1), fog (the same diamond-square plasma), contrast,
  elastic_transform, pixelate and jpeg_compression (Pillow, image by image), frost (the same
  textures, resized by 0.2 as OpenCV does, which for that factor is exactly taking every fifth
  pixel from the third: shipped pre-resized in ``frost.npz``).
* brightness: the HSV value shift in closed form (scaling RGB by V'/V, black going to grey),
  which is what scikit-image's rgb2hsv -> hsv2rgb round trip computes, up to float rounding.
* motion_blur and snow used ImageMagick's ``MotionBlurImage`` (through Wand), which is not
  available here; they use its kernel (a one-sided Gaussian of width ``2 * ceil(radius) + 1``
  with ImageMagick's rounded pixel offsets and edge pixels outside the image), as
  ``imagecorruptions`` re-implemented it; results are rounded to uint8 as ImageMagick's PNG.
* elastic_transform's affine step used OpenCV's ``warpAffine`` (bilinear, reflect-101 border),
  which quantises source coordinates to 1/32 pixel; here they are exact (scipy ``mirror``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from cnnbench.robustness.protocol import CORRUPTIONS

__all__ = ["CORRUPT", "FROST_FILE", "build_frost_textures", "corrupt", "frost_textures"]

FROST_FILE = Path(__file__).with_name("frost.npz")
_GRAY = (0.299, 0.587, 0.114)  # OpenCV's RGB2GRAY weights (ITU-R BT.601)

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """``np.uint8(np.clip(x, 0, 255))``: truncation, as the original's final conversion."""
    return np.clip(x, 0, 255).astype(np.uint8)


def _unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) / 255.0


def _gaussian(x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0):
    """scikit-image's ``gaussian`` over the two image axes of a batch (N, H, W[, C])."""
    sig = (0, sigma, sigma) + (0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sig, mode=mode, truncate=truncate)


# ----------------------------------------------------------------------------- noise
def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]  # std of the noise, image in [0, 1]
    f = _unit(x)
    return _to_uint8(np.clip(f + rng.normal(scale=c, size=f.shape), 0, 1) * 255)


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (500, 250, 100, 75, 50)[severity - 1]  # photons at full intensity (fewer: noisier)
    f = _unit(x)
    return _to_uint8(np.clip(rng.poisson(f * c) / c, 0, 1) * 255)


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]  # share of values set to 0 or 1
    f = _unit(x)
    flipped = rng.random(f.shape) <= c
    salted = rng.random(f.shape) <= 0.5
    f[flipped & salted] = 1.0
    f[flipped & ~salted] = 0.0
    return _to_uint8(f * 255)


# ----------------------------------------------------------------------------- blur
def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The anti-aliased disk: a 17x17 disk of ``radius`` smoothed by a 3x3 Gaussian (sigma
    ``alias_blur``), cropped to its non-zero support (all radii of the protocol are <= 8)."""
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2 * alias_blur**2))
    g /= g.sum()
    kernel = ndimage.correlate(disk, np.outer(g, g), mode="mirror")
    rows, cols = np.flatnonzero(kernel.any(1)), np.flatnonzero(kernel.any(0))
    return kernel[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    k = _disk_kernel(radius, alias)
    out = ndimage.correlate(_unit(x), k[None, :, :, None], mode="mirror")  # reflect-101
    return _to_uint8(np.clip(out, 0, 1) * 255)


def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # sigma of the Gaussian blur, largest pixel shift, rounds of local shuffling
    sigma, delta, rounds = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2),
                            (0.4, 1, 2))[severity - 1]  # fmt: skip
    img = _to_uint8(_gaussian(_unit(x), sigma) * 255)
    n, h, w = img.shape[:3]
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    # every shift of every step, drawn at once: (rounds, rows, cols, N, [dx, dy]) in
    # [-delta, delta) as the original's randint
    shifts = rng.integers(-delta, delta, size=(rounds, len(rows), len(cols), n, 2))
    idx = np.arange(n)
    for r in range(rounds):
        for i, hh in enumerate(rows):
            for j, ww in enumerate(cols):
                # The original's "swap" `x[h, w], x[h', w'] = x[h', w'], x[h, w]` assigns numpy
                # views, so it copies the neighbour onto (h, w) and leaves the neighbour as it
                # is; kept as it made CIFAR-10-C. Sequential over positions (a value can travel
                # on), so the loop is over positions, every image of the batch at once.
                h2, w2 = hh + shifts[r, i, j, :, 1], ww + shifts[r, i, j, :, 0]
                img[idx, hh, ww] = img[idx, h2, w2]
    return _to_uint8(np.clip(_gaussian(_unit(img), sigma), 0, 1) * 255)


def _motion_blur(img: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's MotionBlurImage on uint8 (N, H, W, C), one angle (degrees) per image:
    ``out(y, x) = sum_i k_i * in(y + dy_i, x + dx_i)`` with a one-sided Gaussian ``k`` of width
    ``2 * ceil(radius) + 1``, offsets rounded as ImageMagick does, edge pixels outside."""
    width = int(2 * math.ceil(radius) + 1)
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    k /= k.sum()
    n, h, w = img.shape[:3]
    theta = np.deg2rad(angles)
    rows, cols = np.arange(h), np.arange(w)
    flat = img.reshape(n * h * w, -1)
    base = (np.arange(n) * h)[:, None, None]
    out = np.zeros(img.shape, dtype=np.float64)
    for i in range(width):
        dx = np.ceil(i * np.cos(theta) - 0.5).astype(np.int64)
        dy = np.ceil(i * np.sin(theta) - 0.5).astype(np.int64)
        r = np.clip(rows[None, :] + dy[:, None], 0, h - 1)[:, :, None]
        c = np.clip(cols[None, :] + dx[:, None], 0, w - 1)[:, None, :]
        out += k[i] * np.take(flat, ((base + r) * w + c).ravel(), axis=0).reshape(img.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)  # ImageMagick rounds to the PNG


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    return _motion_blur(x, radius, sigma, rng.uniform(-45, 45, size=len(x)))


def _zoom_matrix(n: int, factor: float) -> np.ndarray:
    """(round(n * factor), n) weights of ``scipy.ndimage.zoom(order=1)`` along one axis:
    output index o reads input coordinate ``o * (n - 1) / (m - 1)``, linearly interpolated."""
    m = round(n * factor)
    pos = np.arange(m) * ((n - 1) / (m - 1)) if m > 1 else np.zeros(1)
    lo = np.minimum(np.floor(pos).astype(np.int64), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    mat = np.zeros((m, n))
    np.add.at(mat, (np.arange(m), lo), 1 - frac)
    np.add.at(mat, (np.arange(m), hi), frac)
    return mat


def _clipped_zoom(f: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of a batch (N, H, H, C) by ``factor`` (bilinear, as
    ``scipy.ndimage.zoom(order=1)`` of each image), cropped back to H x H. Bilinear zoom is
    separable: two small matrix products per image instead of scipy's 4-d interpolation."""
    h = f.shape[1]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    mat = _zoom_matrix(ch, factor)
    trim = (mat.shape[0] - h) // 2
    mat = mat[trim : trim + h]  # (H, ch)
    crop = f[:, top : top + ch, top : top + ch].transpose(0, 3, 1, 2).astype(np.float64)
    out = mat @ crop @ mat.T  # (N, C, H, H)
    return out.transpose(0, 2, 3, 1).astype(f.dtype)


def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # np.arange as in the protocol: severity 1 gets 7 factors (1.00..1.06, float rounding)
    stop = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    factors = np.arange(1, stop, 0.01)
    f = _unit(x).astype(np.float32)
    out = np.zeros_like(f)
    for factor in factors:
        out += _clipped_zoom(f, float(factor))
    return _to_uint8(np.clip((f + out) / (len(factors) + 1), 0, 1) * 255)


# ----------------------------------------------------------------------------- weather
def snow(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # mean and std of the snow field, its zoom, threshold, motion-blur radius and sigma, and
    # the weight of the original image against its brightened grey version
    loc, scale, zoom, thresh, radius, sigma, keep = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[severity - 1]
    f = _unit(x).astype(np.float32)
    n, h, w = f.shape[:3]
    layer = rng.normal(loc=loc, scale=scale, size=(n, h, w, 1))
    layer = _clipped_zoom(layer, zoom)
    layer[layer < thresh] = 0
    flakes = (np.clip(layer, 0, 1) * 255).astype(np.uint8)  # the grey PNG ImageMagick blurs
    flakes = _motion_blur(flakes, radius, sigma, rng.uniform(-135, -45, size=n)) / 255.0
    gray = (f * np.asarray(_GRAY, dtype=np.float32)).sum(-1, keepdims=True)
    f = keep * f + (1 - keep) * np.maximum(f, gray * 1.5 + 0.5)
    out = f + flakes + flakes[:, ::-1, ::-1]  # and the layer turned by 180 degrees
    return _to_uint8(np.clip(out, 0, 1) * 255)


def build_frost_textures(folder: str | Path) -> dict[str, np.ndarray]:
    """The frost textures at CIFAR scale from a folder holding ``frost1.png`` ..
    ``frost5.jpg`` (e.g. the ``imagecorruptions`` package's ``frost/``): RGB uint8, resized
    by 0.2 as ``cv2.resize(fx=0.2)`` does (for that factor: pixels 2, 7, 12, ... of each axis).
    How ``frost.npz`` was made; the protocol draws one of the first five (``randint(5)``)."""
    from PIL import Image

    out = {}
    for i, name in enumerate(("frost1.png", "frost2.png", "frost3.png", "frost4.jpg",
                              "frost5.jpg")):  # fmt: skip
        with Image.open(Path(folder) / name) as im:
            full = np.asarray(im.convert("RGB"))
        h, w = round(full.shape[0] * 0.2), round(full.shape[1] * 0.2)
        out[f"frost{i + 1}"] = np.ascontiguousarray(full[2::5, 2::5][:h, :w])
    return out


@lru_cache(maxsize=1)
def frost_textures() -> tuple[np.ndarray, ...]:
    """The five shipped frost textures (``frost.npz``), RGB uint8 at CIFAR scale."""
    with np.load(FROST_FILE, allow_pickle=False) as z:
        return tuple(z[f"frost{i}"] for i in range(1, 6))


def frost(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    keep, amount = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    textures = frost_textures()
    n, h, w = x.shape[:3]
    which = rng.integers(0, 5, size=n)
    out = np.empty(x.shape, dtype=np.float64)
    for t, tex in enumerate(textures):
        sel = np.flatnonzero(which == t)
        top = rng.integers(0, tex.shape[0] - h, size=len(sel))
        left = rng.integers(0, tex.shape[1] - w, size=len(sel))
        r = (top[:, None] + np.arange(h))[:, :, None]
        c = (left[:, None] + np.arange(w))[:, None, :]
        out[sel] = keep * x[sel].astype(np.float64) + amount * tex[r, c]
    return _to_uint8(out)


def _plasma(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height maps (N, size, size) in [0, 1]; ``size`` a power of two."""
    m = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def wibbled(a: np.ndarray) -> np.ndarray:
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = m[:, 0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares += np.roll(squares, -1, axis=2)
        m[:, half:size:step, half:size:step] = wibbled(squares)
        centres = m[:, half:size:step, half:size:step]
        corners = m[:, 0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        m[:, 0:size:step, half:size:step] = wibbled(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        m[:, half:size:step, 0:size:step] = wibbled(top)
        step //= 2
        wibble /= decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    f = _unit(x)
    n, h, w = f.shape[:3]
    size = 1 << (max(h, w) - 1).bit_length()  # 32 for CIFAR
    peak = f.max(axis=(1, 2, 3), keepdims=True)
    f = f + amount * _plasma(n, size, decay, rng)[:, :h, :w, None]
    return _to_uint8(np.clip(f * peak / (peak + amount), 0, 1) * 255)


# ----------------------------------------------------------------------------- digital
def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]  # added to the HSV value
    f = _unit(x)
    v = f.max(axis=-1, keepdims=True)
    v2 = np.minimum(v + c, 1.0)
    # hue and saturation kept: RGB scales with V; a black pixel (S = 0) becomes grey V'
    safe = np.where(v > 0, v, 1.0)
    out = np.where(v > 0, f * (v2 / safe), v2)
    return _to_uint8(np.clip(out, 0, 1) * 255)


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]  # kept share of the deviation from the mean
    f = _unit(x)
    means = f.mean(axis=(1, 2), keepdims=True)  # per image and channel
    return _to_uint8(np.clip((f - means) * c + means, 0, 1) * 255)


def _fold(i: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Integer indices folded into ``[0, n)`` as scipy.ndimage extends a signal: ``reflect``
    (d c b a | a b c d | d c b a) or ``mirror`` (d c b | a b c d | c b a, OpenCV's reflect-101)."""
    if mode == "reflect":
        i = np.mod(i, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i)
    if n == 1:
        return np.zeros_like(i)
    i = np.mod(i, 2 * n - 2)
    return np.where(i >= n, 2 * n - 2 - i, i)


def _sample(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Bilinear samples of a batch (N, H, W, C) at (N, H, W) coordinates, what
    ``scipy.ndimage.map_coordinates(order=1, mode=mode)`` gives for each image: four gathers
    with the out-of-range neighbours folded back by ``mode``."""
    n, h, w = img.shape[:3]
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    ra, rb = _fold(r0, h, mode), _fold(r0 + 1, h, mode)
    ca, cb = _fold(c0, w, mode), _fold(c0 + 1, w, mode)
    flat = img.reshape(n * h * w, -1)
    base = (np.arange(n) * h)[:, None, None]

    def at(r: np.ndarray, c: np.ndarray) -> np.ndarray:  # one gather of whole pixels
        return np.take(flat, ((base + r) * w + c).ravel(), axis=0).reshape(img.shape)

    top = at(ra, ca) * (1 - fc) + at(ra, cb) * fc
    bottom = at(rb, ca) * (1 - fc) + at(rb, cb) * fc
    return (top * (1 - fr) + bottom * fr).astype(img.dtype)


def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    size = x.shape[1]  # IMSIZE of the protocol (32)
    # strength and smoothness of the elastic field, range of the random affine (pixels)
    alpha, sigma, shift = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                           (0.1, 0.03, 0.03))[severity - 1]  # fmt: skip
    alpha, sigma, shift = size * alpha, size * sigma, size * shift
    f = _unit(x).astype(np.float32)
    n, h, w = f.shape[:3]
    # random affine: three points (x, y) moved by up to `shift`, the map that moves them
    centre, half = np.float32([h, w]) // 2, min(h, w) // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + rng.uniform(-shift, shift, size=(n, 3, 2)).astype(np.float32)
    ones = np.ones((3, 1))
    # affine M with dst = M [x y 1]^T, then the inverse map dst -> src for sampling
    m = np.linalg.solve(np.hstack([src, ones])[None], dst.astype(np.float64))  # (N, 3, 2)
    a, t = m[:, :2, :].transpose(0, 2, 1), m[:, 2, :]  # (N, 2, 2), (N, 2)
    ainv = np.linalg.inv(a)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    px = xx[None] - t[:, 0, None, None]  # (N, H, W)
    py = yy[None] - t[:, 1, None, None]
    src_x = ainv[:, 0, 0, None, None] * px + ainv[:, 0, 1, None, None] * py
    src_y = ainv[:, 1, 0, None, None] * px + ainv[:, 1, 1, None, None] * py
    f = _sample(f, src_y, src_x, "mirror")  # OpenCV's BORDER_REFLECT_101
    # elastic: smoothed uniform displacement fields
    dx = (_gaussian(rng.uniform(-1, 1, size=(n, h, w)), sigma, mode="reflect", truncate=3)
          * alpha).astype(np.float32)  # fmt: skip
    dy = (_gaussian(rng.uniform(-1, 1, size=(n, h, w)), sigma, mode="reflect", truncate=3)
          * alpha).astype(np.float32)  # fmt: skip
    out = _sample(f, yy[None] + dy, xx[None] + dx, "reflect")
    return _to_uint8(np.clip(out, 0, 1) * 255)


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]  # side of the small image, relative
    h, w = x.shape[1:3]
    small = (int(w * c), int(h * c))
    out = np.empty_like(x)
    for i, img in enumerate(x):  # Pillow's box filter, image by image
        im = Image.fromarray(img).resize(small, Image.Resampling.BOX)
        out[i] = np.asarray(im.resize((w, h), Image.Resampling.BOX))
    return out


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[severity - 1]
    out = np.empty_like(x)
    for i, img in enumerate(x):  # Pillow's encoder, image by image
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


CORRUPT: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}


def corrupt(images: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``images`` (uint8, N x 32 x 32 x 3) through corruption ``name`` at ``severity`` (1..5),
    every random draw from ``rng``; a new uint8 array of the same shape."""
    if name not in CORRUPT:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be one of 1..5, got {severity!r}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(
            "the CIFAR-C corruptions are defined for uint8 (N, 32, 32, 3) images, got "
            f"{images.dtype} {images.shape}"
        )
    if len(images) == 0:
        return images.copy()
    out = CORRUPT[name](images, severity, rng)
    assert out.shape == images.shape and out.dtype == np.uint8
    return out
