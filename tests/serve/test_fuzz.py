"""Fuzzing the upload endpoints: no input may produce a 500 or stop the server."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ALLOWED = {200, 413, 415, 422}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(width: int, height: int, depth: int, color: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(idat))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def samples(photo, encode) -> list[bytes]:
    small = photo.resize((40, 30))
    return [encode(small, fmt) for fmt in ("PNG", "JPEG", "WEBP", "BMP")]


def check(client, data: bytes, field: str = "file") -> None:
    path = "/predict" if field == "file" else "/predict/batch"
    r = client.post(path, files=[(field, ("fuzz.bin", data))])
    assert r.status_code in ALLOWED, (r.status_code, r.text, data[:64])
    body = r.json()
    if r.status_code != 200:
        assert set(body) == {"error", "detail"}
    elif field == "files":
        assert body["results"][0]["status"] in ALLOWED


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(client, data):
    check(client, data)


@FUZZ
@given(
    index=st.integers(0, 3),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8),
)
def test_truncated_and_mutated_images(client, samples, index, cut, flips):
    data = bytearray(samples[index])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    check(client, bytes(data[: max(1, int(cut * len(data)))]))


@FUZZ
@given(
    width=st.one_of(st.integers(0, 64), st.integers(10_000, 2**31 - 1)),
    height=st.one_of(st.integers(0, 64), st.integers(10_000, 2**31 - 1)),
    depth=st.sampled_from([1, 2, 4, 8, 16, 3]),
    color=st.sampled_from([0, 2, 3, 4, 6, 5]),
    idat=st.binary(max_size=256),
)
def test_crafted_png_headers(client, width, height, depth, color, idat):
    check(client, crafted_png(width, height, depth, color, idat))


@FUZZ
@given(data=st.binary(max_size=1024))
def test_batch_endpoint(client, data):
    check(client, data, field="files")


def test_server_still_serves_after_fuzzing(client, samples):
    assert client.get("/health").json()["status"] == "ok"
    assert client.post("/predict", files={"file": ("a.png", samples[0])}).status_code == 200
    assert 'code="500"' not in client.get("/metrics").text
