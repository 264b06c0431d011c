"""Decoding limits of ``cnnbench.inference.image`` (no model, no data): pixels checked from
the header before decoding, JPEG reduced-scale decoding, corrupt headers, and a fuzz test:
any bytes give an array or an ``ImageError``, nothing else."""

from __future__ import annotations

import io
import struct
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from cnnbench.inference import ImageError, check_header, decode_upload, load_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png(width: int, height: int, depth: int = 8, color: int = 2, idat: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(idat or b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + body + chunk(b"IEND", b"")


@pytest.fixture
def decoded(monkeypatch) -> list[tuple[int, int]]:
    """Sizes Pillow actually decodes (an ``ImageFile.load`` with tiles left to decode)."""
    sizes: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        if self.tile:
            sizes.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return sizes


def test_bomb_is_refused_from_its_header(decoded):
    bomb = encode(Image.new("1", (7000, 7000)), "PNG")
    with pytest.raises(ImageError) as e:
        decode_upload(bomb, (32, 32), max_pixels=4_000_000)
    assert (e.value.status, e.value.error) == (413, "image_too_large")
    assert decoded == []
    with pytest.raises(ImageError, match="MP limit"):  # the same for files on disk
        load_image(bomb, 32, max_pixels=4_000_000)
    assert decoded == []


def test_jpeg_pixels_count_at_the_reduced_scale(decoded):
    photo = encode(Image.radial_gradient("L").resize((2400, 1600)).convert("RGB"), "JPEG")
    x = decode_upload(photo, (32, 32), max_pixels=100_000)  # 3.8 MP file, 60,000 decoded
    assert x.shape == (3, 32, 32) and decoded == [(300, 200)]
    assert decode_upload(photo, (224, 224), max_pixels=1_000_000).shape == (3, 224, 224)
    assert decoded[-1] == (600, 400)  # 1/4: the largest reduction that stays >= 224
    with pytest.raises(ImageError) as e:  # at full size (no target given) it is too big
        check_header(photo, max_pixels=100_000)
    assert e.value.status == 413
    assert check_header(photo, max_pixels=100_000, size=(32, 32)) == "JPEG"
    assert np.array_equal(load_image(photo, 32), decode_upload(photo, (32, 32)))


@pytest.mark.parametrize("size", [(0, 0), (0, 9), (9, 0)])
def test_empty_or_invalid_header_of_an_accepted_format_is_corrupt(size):
    with pytest.raises(ImageError) as e:
        decode_upload(png(*size), (32, 32))
    assert (e.value.status, e.value.error) == (422, "corrupt_image")


def test_unknown_bytes_are_still_not_an_image():
    for data in (b"hello", b"\x89PNX not quite", b"RIFF\0\0\0\0WAVEfmt "):
        with pytest.raises(ImageError) as e:
            decode_upload(data, (32, 32))
        assert e.value.status == 415, data


def test_large_decode_context_wraps_only_the_decoding():
    calls: list[int] = []

    @contextmanager
    def gate(pixels: int):
        calls.append(pixels)
        yield

    decode_upload(encode(Image.new("RGB", (120, 80)), "PNG"), (32, 32), large_decode=gate)
    assert calls == [120 * 80]
    with pytest.raises(ImageError):
        decode_upload(png(5000, 5000), (32, 32), max_pixels=1_000_000, large_decode=gate)
    assert calls == [120 * 80]  # refused before: no slot taken


@pytest.mark.parametrize(
    "image",
    [
        Image.new("1", (50, 40), 1),
        Image.new("P", (50, 40), 3),
        Image.fromarray(np.full((40, 50), 40000, np.uint16)),
        Image.new("LA", (50, 40), (10, 0)),
        Image.new("RGBA", (50, 40), (0, 0, 0, 0)),
        Image.new("CMYK", (50, 40), (0, 50, 100, 0)),
    ],
    ids=["1", "P", "I;16", "LA", "RGBA", "CMYK"],
)
def test_odd_modes_decode_to_rgb(image):
    x = decode_upload(encode(image, "JPEG" if image.mode == "CMYK" else "PNG"), (32, 32))
    assert x.shape == (3, 32, 32) and x.dtype == np.uint8


def test_sixteen_bit_rounding_is_exact():
    values = np.arange(0, 65536, 7, dtype=np.uint16)[: 64 * 64].reshape(64, 64)
    x = decode_upload(encode(Image.fromarray(values), "PNG"), (64, 64))
    want = np.floor(values / 257 + 0.5).astype(np.uint8)
    assert np.array_equal(x[0], want)


SEEDS = [
    encode(Image.radial_gradient("L").resize((40, 30)).convert(mode), fmt)
    for mode, fmt in [("RGB", "PNG"), ("RGB", "JPEG"), ("RGBA", "WEBP"), ("RGB", "BMP")]
]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    which=st.integers(0, len(SEEDS) - 1),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6),
    noise=st.binary(max_size=64),
)
def test_any_bytes_give_an_array_or_an_image_error(which, cut, flips, noise):
    data = bytearray(SEEDS[which])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    data = bytes(data[: int(cut * len(data))]) + noise
    try:
        x = decode_upload(data, (32, 32), max_pixels=1_000_000)
    except ImageError as e:
        assert e.status in (413, 415, 422) and e.detail
    else:
        assert x.shape == (3, 32, 32) and x.dtype == np.uint8
