"""The service's limits with a stand-in model (no data needed): pixels checked before
decoding, JPEGs decoded at a reduced scale, large decodes capped, JSON for every error, no
server paths in answers, /docs served offline."""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import threading
import time
import zlib

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from cnnbench.serve import create_app
from cnnbench.serve.limits import DEFAULT_MAX_PIXELS, LARGE_DECODE_PIXELS


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_ihdr(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def assert_json_error(r, status: int, error: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    if error is not None:
        assert body["error"] == error, body
    return body


@pytest.fixture
def loads(monkeypatch) -> list[tuple[int, int]]:
    """The size of every image Pillow decodes during the test (``ImageFile.load`` with tiles
    still to decode; later calls on a loaded image decode nothing)."""
    seen: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        if self.tile:
            seen.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


@pytest.fixture
def client(fake_model):
    with TestClient(create_app(model=fake_model), raise_server_exceptions=False) as c:
        yield c


def post(client, data: bytes, name: str = "x.png"):
    return client.post("/predict", files={"file": (name, data)})


def test_one_bit_bomb_is_refused_before_decoding(client, loads):
    bomb = encode(Image.new("1", (7000, 7000)), "PNG")  # 49 MP, 245 MB once decoded as RGB
    assert len(bomb) < 10_000
    body = assert_json_error(post(client, bomb), 413, "image_too_large")
    assert "7000 x 7000" in body["detail"] and f"{DEFAULT_MAX_PIXELS:,} pixels" in body["detail"]
    assert loads == []  # the header was read, the pixels never
    r = client.post("/predict/batch", files=[("files", (f"{i}.png", bomb)) for i in range(32)])
    assert r.status_code == 200 and r.json()["errors"] == 32 and loads == []


def test_limit_is_a_setting_and_counts_decoded_pixels(fake_model, loads):
    square = encode(Image.new("RGB", (1000, 1000), (200, 10, 10)), "PNG")
    with TestClient(create_app(model=fake_model, max_pixels=999_999)) as c:
        assert_json_error(post(c, square), 413, "image_too_large")
        assert c.get("/model").json()["max_pixels"] == 999_999
    with TestClient(create_app(model=fake_model, max_pixels=1_000_000)) as c:
        assert post(c, square).status_code == 200
    assert loads == [(1000, 1000)]


def test_big_jpeg_is_decoded_at_a_reduced_scale(client, loads):
    photo = Image.radial_gradient("L").resize((4000, 3000)).convert("RGB")  # 12 MP
    r = post(client, encode(photo, "JPEG"), "photo.jpg")
    assert r.status_code == 200, r.text
    assert loads == [(500, 375)]  # 1/8 scale, still >= 32 x 32
    assert_json_error(post(client, encode(photo, "PNG")), 413, "image_too_large")
    assert loads == [(500, 375)]


@pytest.mark.parametrize("size", [(0, 0), (0, 7), (7, 0)])
def test_empty_header_is_corrupt_not_unsupported(client, size):
    body = assert_json_error(post(client, png_ihdr(*size)), 422, "corrupt_image")
    assert "PNG" in body["detail"]


def test_large_decodes_wait_for_a_slot(fake_model, monkeypatch):
    """At most ``large_decodes`` images over LARGE_DECODE_PIXELS decode at once."""
    real = ImageFile.ImageFile.load
    big = encode(Image.new("L", (1100, 1000), 90), "PNG")
    assert LARGE_DECODE_PIXELS < 1100 * 1000
    state = {"active": 0, "peak": 0}
    lock = threading.Lock()
    barrier: list[threading.Barrier] = []

    def load(self):
        if not self.tile:
            return real(self)
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        try:
            if barrier:
                barrier[0].wait(timeout=20)  # only passes if that many decode together
            time.sleep(0.05)
            return real(self)
        finally:
            with lock:
                state["active"] -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)

    def decode_together(model, n: int) -> None:
        errors: list[BaseException] = []

        def work():
            try:
                model.preprocess(big)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

    decode_together(dataclasses.replace(fake_model, large_decodes=1), 4)
    assert state["peak"] == 1
    state["peak"] = 0
    barrier.append(threading.Barrier(2))
    decode_together(dataclasses.replace(fake_model, large_decodes=2), 4)
    assert state["peak"] == 2


def test_every_error_is_json(client):
    assert_json_error(client.get("/nope"), 404, "not_found")
    assert_json_error(client.get("/predict"), 405, "method_not_allowed")
    assert_json_error(client.request("FOO", "/health"), 405, "method_not_allowed")
    assert_json_error(client.delete("/model"), 405)
    assert_json_error(client.post("/predict", params={"top_k": "x"}), 422, "invalid_request")
    assert_json_error(client.post("/predict", json={"file": "x"}), 422, "invalid_request")
    ctype = {"content-type": "multipart/form-data; boundary=zz"}
    r = client.post("/predict", content=b"--zz\r\nbroken", headers=ctype)
    assert_json_error(r, r.status_code)
    assert r.status_code in (400, 422)
    assert_json_error(client.get("/docs/assets/nope.js"), 404, "not_found")


def test_model_answer_has_names_and_hash_not_paths(client, fake_model):
    info = client.get("/model").json()
    assert info["file"] == "model.onnx" and info["sha256"] == "0" * 64
    assert "source" not in info and fake_model.source not in client.get("/model").text
    assert info["large_decodes"] == 2 and info["body_timeout_s"] == 30.0


def test_default_workers_do_not_grow_with_the_machine(fake_model, monkeypatch):
    """Sized from the cores this process may use (``cnnbench.env.usable_cpus``), capped."""
    monkeypatch.setattr("cnnbench.serve.limits.usable_cpus", lambda: 128)
    with TestClient(create_app(model=fake_model)) as c:
        assert c.get("/model").json()["workers"] == 4
    monkeypatch.setattr("cnnbench.serve.limits.usable_cpus", lambda: 2)
    with TestClient(create_app(model=fake_model)) as c:
        assert c.get("/model").json()["workers"] == 2


def test_docs_are_served_offline(client):
    pytest.importorskip("swagger_ui_bundle", reason="swagger-ui-bundle-v2 is not installed")
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "SwaggerUIBundle" in html and "/openapi.json" in html
    assert not re.search(r"https?://", html)  # no CDN, no outside favicon
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert len(urls) == 3 and all(u.startswith("/docs/assets/") for u in urls), urls
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    js = client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in js.headers["content-type"] and b"SwaggerUIBundle" in js.content
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")


FORMS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PART_HEADERS = st.sampled_from(
    [
        b'Content-Disposition: form-data; name="file"; filename="a.png"',
        b'Content-Disposition: form-data; name="file"',
        b'Content-Disposition: form-data; name="files"; filename="b.png"',
        b"Content-Disposition: form-data",
        b"Content-Disposition: attachment; filename=\xff\xfe",
        b"Content-Type: image/png",
        b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC.png",
        b"",
    ]
)


@FORMS
@given(
    boundary=st.text("abcXYZ019'()+_,-./:=?", min_size=1, max_size=70),
    parts=st.lists(
        st.tuples(st.lists(PART_HEADERS, max_size=3), st.binary(max_size=300)), max_size=4
    ),
    cut=st.floats(0.0, 1.0),
    path=st.sampled_from(["/predict", "/predict/batch"]),
)
def test_odd_multipart_forms_never_get_a_5xx(client, boundary, parts, cut, path):
    b = boundary.encode()
    body = b""
    for headers, content in parts:
        body += b"--" + b + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + content + b"\r\n"
    body += b"--" + b + b"--\r\n"
    body = body[: int(cut * len(body))] if cut < 0.9 else body
    ctype = f"multipart/form-data; boundary={boundary}"
    r = client.post(path, content=body, headers={"content-type": ctype})
    assert r.status_code in {200, 400, 413, 415, 422}, (r.status_code, r.text)
    if r.status_code != 200:
        assert set(r.json()) == {"error", "detail"}
