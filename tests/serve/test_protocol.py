"""The service behind a real uvicorn server: slow heads and bodies are answered 408 and
closed (slowloris), and what uvicorn answers itself (malformed requests) is JSON too."""

from __future__ import annotations

import json
import socket

import pytest

from cnnbench.serve import create_app

WAIT = 20.0  # seconds a test waits for an answer before failing; far above the timeouts


def exchange(port: int, data: bytes, sock: socket.socket | None = None) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        s.sendall(data)
        return read_to_close(s)
    finally:
        s.close()


def read_to_close(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):  # a socket.timeout here means "never closed": a failure
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(s: socket.socket) -> bytes:
    """One response on a kept-alive connection: its head, then Content-Length bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(parse_headers(head)["content-length"])
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def parse_headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    return {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}


def parse(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b"\r\n")[0].split()[1])
    return status, parse_headers(head), json.loads(body)


@pytest.fixture
def port(fake_model, live_server):
    app = create_app(model=fake_model, body_timeout=1.0)
    with live_server(app, head_timeout=1.0) as p:
        yield p


SLOW_BODY = (
    b"POST /predict HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: 10000\r\n\r\n"
    + b"--zz\r\n"
    + b"x" * 94
)


def test_slow_body_gets_408_and_the_connection_is_closed(port):
    status, headers, body = parse(exchange(port, SLOW_BODY))
    assert status == 408 and body["error"] == "request_timeout"
    assert "1 s" in body["detail"] and headers["connection"] == "close"
    assert headers["content-type"].startswith("application/json")


def test_many_slow_bodies_are_all_closed_and_others_are_served(port):
    socks = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(50)]
    for s in socks:
        s.sendall(SLOW_BODY)
    health = exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert parse(health)[0] == 200
    answers = [read_to_close(s) for s in socks]
    for s in socks:
        s.close()
    assert all(parse(a)[0] == 408 for a in answers)


@pytest.mark.parametrize("data", [b"", b"POST /predict HTTP/1.1\r\nHost: x\r\n"])
def test_slow_or_missing_head_gets_408_and_is_closed(port, data):
    status, _headers, body = parse(exchange(port, data))
    assert status == 408 and body["error"] == "request_timeout" and "head" in body["detail"]


def test_keep_alive_connection_serves_requests_then_is_closed(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(get)
    assert parse(read_response(s))[0] == 200
    s.sendall(get)  # the same connection serves the next request
    assert parse(read_response(s))[0] == 200
    s.sendall(b"GET /health HTTP/1.1\r\n")  # then a head that never ends
    status, _, body = parse(read_to_close(s))
    s.close()
    assert status == 408 and body["error"] == "request_timeout"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40,  # TLS hello on plain HTTP
    ],
    ids=["length-not-a-number", "length-negative", "bad-method", "bad-header", "tls"],
)
def test_malformed_requests_get_json_400(port, request_bytes):
    status, headers, body = parse(exchange(port, request_bytes))
    assert status == 400 and body["error"] == "bad_request"
    assert headers["content-type"] == "application/json"
    assert (
        parse(exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))[0]
        == 200
    )


def test_unknown_method_reaches_the_app_and_gets_json_405(port):
    status, _, body = parse(
        exchange(port, b"BREW /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    )
    assert status == 405 and body["error"] == "method_not_allowed"
