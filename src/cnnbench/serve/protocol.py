"""uvicorn's h11 HTTP protocol with JSON errors and a deadline for the request head.

    uvicorn.run(app, http=protocol_class(head_timeout=30.0))

What uvicorn answers itself, before the app sees a request, is plain text: "Invalid HTTP
request received." for a malformed request line or header (a bad method token, a
Content-Length that is not a number, an oversized header). This subclass answers those as
the API's JSON ``{"error": "bad_request", "detail": ...}``.

uvicorn also has no timeout for a request head that arrives slowly: its keep-alive timer
runs only between requests, and the first byte of a head cancels it. A client can so hold
a connection open forever (slowloris). Here a head must be complete ``head_timeout``
seconds after its first byte (or after the connection opened); otherwise the server
answers 408 in JSON and closes. The request *body* has its own deadline in the app
(``cnnbench.serve.app``, ``body_timeout``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["JSONH11Protocol", "protocol_class"]


def _raw_response(status: int, reason: str, error: str, detail: str) -> bytes:
    body = json.dumps({"error": error, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class JSONH11Protocol(H11Protocol):
    """``H11Protocol`` whose own error answers are JSON, with a request-head deadline."""

    head_timeout: float = 30.0  # seconds; set by ``protocol_class``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_head_timer()  # a head is (partly) here, or the next one is awaited
        else:
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._cancel_head_timer()  # between requests, uvicorn's keep-alive timer rules
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        self._cancel_head_timer()
        self.transport.write(_raw_response(400, "Bad Request", "bad_request", msg))
        self.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        detail = f"the request head did not arrive within {self.head_timeout:g} s"
        self.transport.write(_raw_response(408, "Request Timeout", "request_timeout", detail))
        self.transport.close()


def protocol_class(head_timeout: float) -> Any:
    """A ``JSONH11Protocol`` subclass with this head deadline, for uvicorn's ``http=``."""
    return type("CnnbenchH11Protocol", (JSONH11Protocol,), {"head_timeout": float(head_timeout)})
