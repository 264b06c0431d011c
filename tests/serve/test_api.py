"""Every endpoint and error case of the service, with real images, through the ASGI client."""

from __future__ import annotations

import dataclasses
import re
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnbench.serve import create_app
from cnnbench.serve.metrics import Metrics, percentile


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` RGB pixels, with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def assert_error(r, status: int, error: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "detail"} and isinstance(body["detail"], str)
    assert "Traceback" not in r.text
    if error is not None:
        assert body["error"] == error
    return body


def post_one(client, data: bytes, name: str = "x.png", **params):
    return client.post("/predict", files={"file": (name, data)}, params=params)


def test_health_and_model(client, onnx_model, run_dir):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    info = client.get("/model").json()
    assert info["name"] == "tiny" and info["model"] == "lenet5" and info["dataset"] == "cifar10"
    assert info["backend"] == "onnxruntime" and info["input_size"] == [3, 32, 32]
    assert info["labels"] == onnx_model.classes and len(info["labels"]) == 10
    assert 0.0 <= info["accuracy"] <= 1.0
    assert (run_dir / "export" / "model.onnx").is_file()  # exported on the fly, then reused
    assert info["file"] == "model.onnx" and len(info["sha256"]) == 64
    assert info["max_pixels"] == 2048 * 2048 and info["workers"] <= 4


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_no_server_paths_in_any_answer(client, run_dir, photo, encode):
    answers = [
        client.get("/model"),
        client.get("/health"),
        client.get("/openapi.json"),
        post_one(client, encode(photo, "PNG")),
        post_one(client, b"junk"),
        client.get("/nowhere"),
    ]
    for r in answers:
        assert str(run_dir) not in r.text and str(run_dir.parent) not in r.text
        assert not [s for s in _strings(r.json()) if s.startswith("/") and Path(s).exists()]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_predict_every_format(client, photo, fmt, encode):
    r = post_one(client, encode(photo, fmt), f"photo.{fmt.lower()}")
    assert r.status_code == 200, r.text
    body = r.json()
    preds = body["predictions"]
    assert len(preds) == 5 and body["filename"] == f"photo.{fmt.lower()}"
    probs = [p["probability"] for p in preds]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    assert len({p["label"] for p in preds}) == 5
    assert body["inference_ms"] > 0 and body["server_ms"] >= body["inference_ms"]


@pytest.mark.parametrize(
    "make",
    [
        lambda im: im.convert("L"),
        lambda im: im.convert("1"),
        lambda im: im.convert("LA"),
        lambda im: im.convert("RGBA"),
        lambda im: im.convert("P"),
        lambda im: Image.fromarray(np.asarray(im.convert("L"), np.uint16) * 257),  # I;16
        lambda im: im.resize((1, 1)),
        lambda im: im.resize((1500, 900)),
    ],
    ids=["L", "1", "LA", "RGBA", "P", "I16", "1x1", "1500x900"],
)
def test_predict_any_mode_and_size(client, photo, make, encode):
    r = post_one(client, encode(make(photo), "PNG"))
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5


def test_cmyk_jpeg_and_transparent_palette(client, photo, encode):
    assert post_one(client, encode(photo.convert("CMYK"), "JPEG"), "c.jpg").status_code == 200
    p = photo.convert("P")
    assert post_one(client, encode(p, "PNG", transparency=0)).status_code == 200


def test_top_k(client, photo, encode):
    data = encode(photo, "PNG")
    assert len(post_one(client, data, top_k=3).json()["predictions"]) == 3
    assert len(post_one(client, data, top_k=1000).json()["predictions"]) == 10  # all classes
    for bad in (0, -1, "abc"):
        assert_error(post_one(client, data, top_k=bad), 422, "invalid_request")


def test_backends_agree_and_match_the_checkpoint(
    onnx_model, torch_model, cifar_images, encode, run_dir
):
    from fastapi.testclient import TestClient

    with TestClient(create_app(model=torch_model)) as torch_client:
        info = torch_client.get("/model").json()
        assert info["backend"] == "torch" and info["file"] == "best.pt"
        assert str(run_dir) not in torch_client.get("/model").text
        for img in cifar_images[:4]:
            data = encode(img, "PNG")
            x = onnx_model.preprocess(data)
            np.testing.assert_allclose(
                onnx_model.predict(x[None]), torch_model.predict(x[None]), atol=1e-5
            )
            top = torch_client.post("/predict", files={"file": ("a.png", data)}).json()
            assert top["predictions"][0]["index"] == int(torch_model.predict(x[None]).argmax())


def test_trained_model_beats_chance(client, cifar10, encode):
    """Served predictions on real test images are the trained model's (not noise)."""
    files = [
        ("files", (f"{i}.png", encode(Image.fromarray(a), "PNG")))
        for i, a in enumerate(cifar10.x_test[:32].permute(0, 2, 3, 1).numpy())
    ]
    body = client.post("/predict/batch", files=files, params={"top_k": 1}).json()
    hits = [
        r["predictions"][0]["index"] == int(y)
        for r, y in zip(body["results"], cifar10.y_test[:32], strict=True)
    ]
    assert sum(hits) > 32 * 0.1  # 10 % is chance; three epochs on 1,000 images get ~45 %


def test_batch_with_one_bad_file(client, cifar_images, encode):
    good = [
        encode(im, fmt) for im, fmt in zip(cifar_images[:3], ["PNG", "JPEG", "WEBP"], strict=True)
    ]
    files = [("files", (f"{i}.img", d)) for i, d in enumerate(good)]
    files.insert(1, ("files", ("notes.txt", b"this is not an image")))
    r = client.post("/predict/batch", files=files, params={"top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 4 and body["errors"] == 1
    res = body["results"]
    assert [x["filename"] for x in res] == ["0.img", "notes.txt", "1.img", "2.img"]
    assert res[1]["status"] == 415 and res[1]["error"] == "not_an_image"
    for x, d in zip([res[0], res[2], res[3]], good, strict=True):
        assert x["status"] == 200 and len(x["predictions"]) == 2
        single = post_one(client, d).json()["predictions"][0]
        assert x["predictions"][0]["label"] == single["label"]
        assert x["predictions"][0]["probability"] == pytest.approx(single["probability"], abs=1e-5)


def test_batch_all_bad_and_too_many(onnx_model, photo, encode):
    app = create_app(model=onnx_model, max_files=3)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/predict/batch", files=[("files", ("a", b"junk")), ("files", ("b", b""))])
        assert r.status_code == 200 and r.json()["errors"] == 2
        data = encode(photo, "PNG")
        r = c.post("/predict/batch", files=[("files", (f"{i}.png", data)) for i in range(4)])
        assert_error(r, 413, "too_large")
        assert c.get("/health").status_code == 200


def test_wrong_field_and_wrong_body(client, photo, encode):
    data = encode(photo, "PNG")
    body = assert_error(client.post("/predict", files={"image": ("a.png", data)}), 422)
    assert "'file'" in body["detail"]
    body = assert_error(client.post("/predict/batch", files={"file": ("a.png", data)}), 422)
    assert "'files'" in body["detail"]
    assert_error(client.post("/predict", content=data, headers={"content-type": "image/png"}), 422)
    assert_error(client.post("/predict"), 422)


def test_not_an_image(client, photo, encode):
    assert_error(post_one(client, b"hello, world\n" * 10, "a.txt"), 415, "not_an_image")
    assert_error(post_one(client, b"", "empty.png"), 415, "not_an_image")
    body = assert_error(post_one(client, encode(photo, "GIF"), "a.gif"), 415, "not_an_image")
    assert "GIF" in body["detail"]
    assert_error(post_one(client, encode(photo, "TIFF"), "a.tif"), 415)


def test_corrupt_images(client, photo, encode):
    for fmt in ("PNG", "JPEG", "WEBP", "BMP"):
        data = encode(photo, fmt)
        r = post_one(client, data[: len(data) // 2], f"half.{fmt}")
        assert r.status_code in (415, 422), (fmt, r.text)
        assert_error(r, r.status_code)
    data = bytearray(encode(photo, "PNG"))
    data[60:80] = b"\xff" * 20  # inside IDAT: a CRC / zlib error
    assert_error(post_one(client, bytes(data)), 422, "corrupt_image")


def test_decompression_bomb_refused(client):
    for w, h in [(100_000, 100_000), (2**31 - 1, 1), (10_000, 10_000)]:
        body = assert_error(post_one(client, png_header(w, h), "bomb.png"), 413, "image_too_large")
        assert "pixels" in body["detail"]
    assert client.get("/health").status_code == 200


def test_upload_limit(onnx_model, photo, encode):
    app = create_app(model=onnx_model, max_upload_mb=0.05)  # 52,428 bytes
    big = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    data = encode(Image.fromarray(big), "PNG")
    assert len(data) > 0.05 * 1024 * 1024
    with TestClient(app, raise_server_exceptions=False) as c:
        body = assert_error(post_one(c, data), 413, "too_large")
        assert "0.05 MB" in body["detail"]

        # No Content-Length (chunked): refused while reading.
        boundary = "cnnbench"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        )
        body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()

        def chunks():
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        ctype = f"multipart/form-data; boundary={boundary}"
        r = c.post("/predict", content=chunks(), headers={"content-type": ctype})
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "too_large")
        assert post_one(c, encode(photo, "PNG")).status_code == 200  # small ones still pass
        snap = app.state.metrics.snapshot()
        assert snap["errors"][413] == 2


def test_lying_content_length_is_enforced_while_reading(onnx_model):
    """A client announcing a small body but streaming a large one is cut off too."""
    import asyncio

    app = create_app(model=onnx_model, max_upload_mb=0.01)
    boundary = "xyz"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    body = head.encode() + b"\0" * 50_000 + f"\r\n--{boundary}--\r\n".encode()
    sent: list[dict] = []

    async def run() -> None:
        chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]

        async def receive():
            data = chunks.pop(0) if chunks else b""
            return {"type": "http.request", "body": data, "more_body": bool(chunks)}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "headers": [
                (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
                (b"content-length", b"100"),
            ],
        }
        await app(scope, receive, send)

    asyncio.run(run())
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413


def test_bad_content_length(client):
    r = client.post("/predict", content=b"x", headers={"content-length": "-5"})
    assert r.status_code in (400, 413, 422)  # the client library may refuse first


def test_unknown_path_and_method(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/predict"), 405, "method_not_allowed")


def test_internal_error_is_generic_json_and_server_survives(onnx_model, photo, caplog, encode):
    class Exploding:
        def predict(self, x):
            raise RuntimeError("secret internal state /etc/passwd")

    broken = dataclasses.replace(onnx_model, predictor=Exploding())
    with TestClient(create_app(model=broken), raise_server_exceptions=False) as c:
        for _ in range(2):
            r = post_one(c, encode(photo, "PNG"))
            body = assert_error(r, 500, "internal_error")
            assert "secret" not in r.text and "RuntimeError" not in r.text
        files = [("files", ("a.png", encode(photo, "PNG")))]
        assert_error(c.post("/predict/batch", files=files), 500)
        assert c.get("/health").status_code == 200
        assert metric(c.get("/metrics").text, "cnnbench_request_errors_total", code="500") == 3
    assert "secret internal state" in caplog.text  # logged on the server side
    assert body["detail"] == "the server failed to handle this request"


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'type="file"' in html and "predict?top_k=5" in html
    # No external resources: no http(s) URLs in src/href attributes, no imports.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html


def metric(text: str, sample: str, **labels: str) -> float | None:
    """The value of one sample of Prometheus text, parsed by prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_metrics_exposition(onnx_model, photo, encode):
    from prometheus_client.parser import text_string_to_metric_families

    app = create_app(model=onnx_model)
    with TestClient(app, raise_server_exceptions=False) as c:
        for _ in range(3):
            post_one(c, encode(photo, "PNG"))
        post_one(c, b"junk")
        c.get("/nowhere")
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "version=0.0.4" in r.headers["content-type"]
    text = r.text
    families = {f.name: f for f in text_string_to_metric_families(text)}  # parses, or raises
    assert families["cnnbench_requests"].type == "counter"
    assert families["cnnbench_request_duration_seconds"].type == "histogram"
    assert families["cnnbench_predict_latency_seconds"].type == "summary"
    assert metric(text, "cnnbench_requests_total", path="/predict", code="200") == 3
    assert metric(text, "cnnbench_requests_total", path="/predict", code="415") == 1
    assert metric(text, "cnnbench_requests_total", path="other", code="404") == 1
    assert metric(text, "cnnbench_request_errors_total", code="415") == 1
    assert metric(text, "cnnbench_request_duration_seconds_bucket", path="/predict", le="+Inf") == 4
    assert metric(text, "cnnbench_predict_latency_seconds", quantile="0.99") > 0
    assert metric(text, "cnnbench_predict_latency_seconds_count") == 3
    assert metric(text, "cnnbench_images_total") == 3
    info = {"name": "tiny", "model": "lenet5", "backend": "onnxruntime"}
    assert metric(text, "cnnbench_model_info", **info) == 1
    assert metric(text, "process_resident_memory_bytes") > 0
    buckets = [
        s.value
        for s in families["cnnbench_inference_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 3


def test_metrics_helpers():
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.99) == 5.0
    m = Metrics(info={"name": 'we"ird\\'})
    text = m.render()
    assert 'name="we\\"ird\\\\"' in text
    assert metric(text, "cnnbench_model_info", name='we"ird\\') == 1  # escaped, parsed back
    assert metric(text, "cnnbench_predict_latency_seconds_count") == 0
    m.request_started()
    m.request_finished("/predict", 413, 0.01)
    assert m.snapshot()["errors"] == {413: 1} and m.snapshot()["requests"] == 1


def test_concurrent_requests_with_micro_batching(onnx_model, cifar_images, encode):
    app = create_app(model=onnx_model, micro_batch=8, batch_wait_ms=30, workers=2)
    datas = [encode(im, "PNG") for im in cifar_images]
    expected = [onnx_model.predict(onnx_model.preprocess(d)[None])[0] for d in datas]
    results: dict[int, dict] = {}
    with TestClient(app) as c:

        def worker(i: int) -> None:
            results[i] = post_one(c, datas[i % len(datas)]).json()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 16
    for i, body in results.items():
        top = body["predictions"][0]
        assert top["index"] == int(expected[i % len(datas)].argmax())
        assert top["probability"] == pytest.approx(float(expected[i % len(datas)].max()), abs=1e-5)
    assert max(b["batch_size"] for b in results.values()) > 1
