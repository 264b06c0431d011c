"""The inference service: ``create_app(run_dir)`` -> a FastAPI app that serves one model.

    POST /predict?top_k=5        multipart field ``file``: one image -> top-k labels + timings
    POST /predict/batch?top_k=5  multipart field ``files``: several images -> one result each
    GET  /health  /model  /metrics (Prometheus text)  /  (the web page)
    GET  /docs                   Swagger UI, its assets served from ``swagger-ui-bundle-v2``

Every error the service answers is JSON ``{"error": <code word>, "detail": <sentence>}``:
400 a malformed request (bad Content-Length; see ``cnnbench.serve.protocol`` for the ones
uvicorn answers itself); 404 / 405 an unknown path or method; 408 a request body that did
not arrive within ``body_timeout`` seconds (slowloris; the connection is then closed); 413
request body over ``max_upload_mb`` (refused from ``Content-Length`` before reading, and
enforced again while reading, for chunked or lying clients) or an image over
``max_pixels`` (read from its header, before decoding: decompression bombs); 415 not an
image, or a format other than PNG, JPEG, WebP, BMP; 422 a corrupt image or header, a
missing or misnamed field, a bad query value; 500 anything unexpected, with a generic
message (the traceback is logged on the server, never sent). No answer holds a path of
the server's file system (``/model`` names the model file and gives its sha256).

Memory is bounded by the settings: bodies by ``max_upload_mb`` (Starlette spools file
parts over 1 MB to disk), decoding by ``max_pixels`` and ``large_decodes``
(``cnnbench.serve.engine``), threads by ``workers``; glibc's mmap threshold is pinned so
large buffers go back to the OS when freed (``cnnbench.serve.memory``).

Concurrency (the choice and its measurement). The event loop only parses HTTP; decoding an
image and running the model are CPU work and go to one ``ThreadPoolExecutor`` of
``workers`` threads (default ``min(4, cores)``: it does not grow with the machine, since
each thread may hold a decode in memory) - ONNX Runtime and PyTorch release the GIL
inside their kernels, and Pillow while decoding, so the threads run in parallel. Each
runtime gets ``cores // workers`` intra-op threads (at least 1), so ``workers`` requests
in flight never oversubscribe the cores: for the small CNNs served here one request per core
beats several cores on one request. Optional micro-batching (``micro_batch > 1``,
``cnnbench serve --micro-batch 8 --batch-wait-ms 2``) lets concurrent requests share one
model call (``cnnbench.serve.batching``).

Measured with ``benchmarks/serve_load.py`` (a raw asyncio HTTP/1.1 client on keep-alive
connections; failed requests count in the tail at the timeout; LeNet-5, ONNX Runtime, a
96x96 PNG of 21 KB per request; the server pinned to one core and the client to the other
of a 2-core machine; "quiet" is nothing else running, the other rows shared the machine with
a training run and other jobs, both at nice 15; requests/s, p50 / p99 ms; 0 errors in every
row):

    clients                          1                 8                  32
    thread pool, quiet (load 1.0-1.3)                                      482/s  67 / 117 ms
    thread pool, load 10-11          106/s  8 / 19 ms  178/s  40 / 135 ms  288/s  96 / 263 ms
    thread pool, load 5                                                    431/s  68 / 174 ms
    micro-batch 8, 2 ms, load 11                                           252/s 116 / 296 ms

The server spends 1.9-2.1 ms of CPU per request (2.7 ms with one client), of which decoding
and resizing the PNG is ~0.65 ms and the model call ~0.13 ms; the rest is HTTP, multipart
parsing and the hand-off to the thread pool. Throughput is that cost: at 482/s and 2.07 ms
per request the server uses its whole core, and with 32 clients in a closed loop the median is
queueing (32 / 482 s = 66 ms), not a stall. Micro-batching lowers the CPU per request (1.65 ms: one
model call for several images) but did not raise throughput or shorten the tail of this
small model on a shared core, so it is off by default; it should pay for larger models,
where the model call dominates. (Earlier figures here, 24/s and a 5 s p99 at 32 clients,
measured the httpx client that sent the load, not the server.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from cnnbench.env import usable_cpus
from cnnbench.inference import ImageError
from cnnbench.rundir import RunDir
from cnnbench.serve import memory
from cnnbench.serve.batching import MicroBatcher
from cnnbench.serve.engine import ServedModel, load_served_model
from cnnbench.serve.limits import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_LARGE_DECODES,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_PIXELS,
    default_workers,
)
from cnnbench.serve.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("cnnbench.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

KNOWN_PATHS = frozenset(
    {"/", "/health", "/model", "/metrics", "/predict", "/predict/batch", "/openapi.json", "/docs"}
)
DOCS_ASSETS = "/docs/assets/"  # one metrics label for every asset file
TopK = Annotated[int, Query(ge=1, le=1000, description="how many labels to return")]
_REASONS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}
_SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def create_app(
    run_dir: RunDir | str | Path | None = None,
    *,
    model: ServedModel | None = None,
    backend: str = "onnxruntime",
    max_upload_mb: float = 10.0,
    workers: int | None = None,
    max_files: int = DEFAULT_MAX_FILES,
    max_pixels: int | None = None,
    large_decodes: int | None = None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    micro_batch: int = 1,
    batch_wait_ms: float = 2.0,
) -> FastAPI:
    """The service for the run at ``run_dir`` (or an already loaded ``model``).

    The model is loaded here, once (``ModelLoadError`` if it cannot be). ``workers``: threads
    that decode and predict (default ``min(4, cores)``); ``max_pixels`` / ``large_decodes``:
    the decoding limits (``cnnbench.serve.engine``; given with ``model``, they replace the
    model's); ``body_timeout``: seconds a request body may take to arrive; ``micro_batch``:
    images per model call when requests arrive together (1: off), waiting at most
    ``batch_wait_ms`` for them. Pins glibc's mmap threshold (process-wide,
    ``cnnbench.serve.memory``) so the memory of large decodes goes back to the OS.
    """
    cores = usable_cpus()
    workers = max(1, workers or default_workers())
    memory.pin_mmap_threshold()
    if model is None:
        if run_dir is None:
            raise ValueError("create_app needs run_dir or model")
        model = load_served_model(
            run_dir,
            backend=backend,
            threads=max(1, cores // workers),
            max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
            large_decodes=large_decodes or DEFAULT_LARGE_DECODES,
        )
    elif max_pixels is not None or large_decodes is not None:
        model = dataclasses.replace(
            model,
            max_pixels=max_pixels or model.max_pixels,
            large_decodes=large_decodes or model.large_decodes,
        )
    service = _Service.start(model, workers, micro_batch, batch_wait_ms)
    app = FastAPI(
        title="cnnbench inference service",
        description=f"Serves {model.name} ({model.model}, {model.dataset}) with {model.backend}.",
        lifespan=service.lifespan,
        docs_url=None,  # /docs is added below, with self-hosted assets (no CDN)
        redoc_url=None,
    )
    app.state.model, app.state.metrics, app.state.pool = model, service.metrics, service.pool
    limits = {
        "max_upload_mb": max_upload_mb,
        "max_files": max_files,
        "max_pixels": model.max_pixels,
        "large_decodes": model.large_decodes,
        "body_timeout_s": body_timeout,
        "workers": workers,
        "micro_batch": micro_batch,
    }
    _add_info_routes(app, service, limits)
    _add_predict_routes(app, service, max_files)
    _add_docs_routes(app)
    _add_error_handlers(app)
    app.add_middleware(
        _Guard, metrics=service.metrics, max_upload_mb=max_upload_mb, body_timeout=body_timeout
    )
    return app


@dataclass
class _Service:
    """What the routes share: the model, its metrics, the worker threads, the micro-batcher."""

    model: ServedModel
    metrics: Metrics
    pool: ThreadPoolExecutor
    workers: int
    batcher: MicroBatcher | None = None

    @classmethod
    def start(
        cls, model: ServedModel, workers: int, micro_batch: int, batch_wait_ms: float
    ) -> _Service:
        metrics = Metrics(
            info={
                "name": model.name,
                "model": model.model,
                "backend": model.backend,
                "dataset": model.dataset,
            }
        )
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnnbench-serve")
        service = cls(model, metrics, pool, workers)
        if micro_batch > 1:
            service.batcher = MicroBatcher(
                model.predict,
                pool,
                max_batch=micro_batch,
                max_wait_s=batch_wait_ms / 1000,
                concurrency=workers,
                on_batch=metrics.inference,
            )
        return service

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        m = self.model
        log.info(
            "serving %s (%s, %s) with %d worker threads", m.name, m.model, m.backend, self.workers
        )
        yield
        if self.batcher is not None:
            await self.batcher.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def predict_now(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(probabilities, seconds) of one model call, recorded in the metrics."""
        t0 = time.perf_counter()
        probs = self.model.predict(x)
        seconds = time.perf_counter() - t0
        self.metrics.inference(len(x), seconds)
        return probs, seconds

    def decode_and_predict(self, data: bytes) -> tuple[np.ndarray, float, float]:
        t0 = time.perf_counter()
        x = self.model.preprocess(data)
        preprocess_s = time.perf_counter() - t0
        probs, seconds = self.predict_now(x[None])
        return probs[0], preprocess_s, seconds

    async def predict_one(self, data: bytes, t0: float) -> tuple[np.ndarray, float, float, int]:
        """(probabilities, preprocess s, inference s, batch size) of one upload."""
        if self.batcher is None:  # one trip to the pool for both steps
            probs, preprocess_s, seconds = await self.in_pool(self.decode_and_predict, data)
            return probs, preprocess_s, seconds, 1
        x = await self.in_pool(self.model.preprocess, data)
        preprocess_s = time.perf_counter() - t0
        result = await self.batcher.submit(x)
        return result.probs, preprocess_s, result.inference_s, result.batch_size

    async def predict_many(
        self, datas: list[bytes]
    ) -> tuple[list[np.ndarray | ImageError], dict[int, np.ndarray], float]:
        """(each upload decoded or its ImageError, {index: probabilities} of the decoded ones,
        seconds of the one model call over them)."""

        def decode(data: bytes) -> np.ndarray | ImageError:
            try:
                return self.model.preprocess(data)
            except ImageError as e:
                return e

        decoded = await asyncio.gather(*(self.in_pool(decode, d) for d in datas))
        good = [i for i, d in enumerate(decoded) if isinstance(d, np.ndarray)]
        probs, seconds = np.zeros((0, len(self.model.classes))), 0.0
        if good:
            probs, seconds = await self.in_pool(
                self.predict_now, np.stack([decoded[i] for i in good])
            )
        return list(decoded), dict(zip(good, probs, strict=True)), seconds

    def top(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        k = min(k, len(probs))
        order = np.argsort(-probs, kind="stable")[:k]
        classes = self.model.classes
        return [
            {"label": classes[i], "index": int(i), "probability": float(probs[i])} for i in order
        ]


def _add_info_routes(app: FastAPI, service: _Service, limits: dict[str, Any]) -> None:
    """``/`` (the page), ``/health``, ``/model``, ``/metrics``."""
    model = service.model
    page = resources.files("cnnbench.serve").joinpath("static/index.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model.name, "backend": model.backend}

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        return {**model.info(), **limits}

    @app.get("/metrics")
    async def metrics_text() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)


def _add_predict_routes(app: FastAPI, service: _Service, max_files: int) -> None:
    """``POST /predict`` (one image) and ``POST /predict/batch`` (several, one model call)."""
    backend = service.model.backend

    @app.post("/predict")
    async def predict(
        file: Annotated[UploadFile, File(description="the image: PNG, JPEG, WebP or BMP")],
        top_k: TopK = 5,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        probs, preprocess_s, seconds, batch = await service.predict_one(await file.read(), t0)
        return {
            "filename": file.filename,
            "predictions": service.top(probs, top_k),
            "inference_ms": round(seconds * 1000, 3),
            "preprocess_ms": round(preprocess_s * 1000, 3),
            "server_ms": round((time.perf_counter() - t0) * 1000, 3),
            "batch_size": batch,
            "backend": backend,
        }

    @app.post("/predict/batch")
    async def predict_batch(
        files: Annotated[list[UploadFile], File(description="the images, one field each")],
        top_k: TopK = 5,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        if len(files) > max_files:
            raise HTTPException(413, f"{len(files)} files in one request; the limit is {max_files}")
        decoded, rows, seconds = await service.predict_many([await f.read() for f in files])
        results = []
        for i, (f, d) in enumerate(zip(files, decoded, strict=True)):
            if isinstance(d, ImageError):
                results.append(
                    {
                        "filename": f.filename,
                        "status": d.status,
                        "error": d.error,
                        "detail": d.detail,
                    }
                )
            else:
                results.append(
                    {
                        "filename": f.filename,
                        "status": 200,
                        "predictions": service.top(rows[i], top_k),
                    }
                )
        return {
            "results": results,
            "count": len(results),
            "errors": len(results) - len(rows),
            "inference_ms": round(seconds * 1000, 3),
            "server_ms": round((time.perf_counter() - t0) * 1000, 3),
            "backend": backend,
        }


def _add_docs_routes(app: FastAPI) -> None:
    """``/docs``: Swagger UI with its script, style sheet and icon served by this app from
    the installed ``swagger-ui-bundle-v2`` (nothing loads from a CDN). Off, with a log line,
    when the package is not installed."""
    assets = swagger_assets()
    if assets is None:
        log.info("/docs is off: Swagger UI 5 assets not installed (swagger-ui-bundle-v2)")
        return

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - API",
            swagger_js_url=root + DOCS_ASSETS + "swagger-ui-bundle.js",
            swagger_css_url=root + DOCS_ASSETS + "swagger-ui.css",
            swagger_favicon_url=root + DOCS_ASSETS + "favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from outside
        )

    @app.get(DOCS_ASSETS + "{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        path = assets.get(name)
        if path is None:
            raise HTTPException(404, f"no documentation asset {name!r}")
        return FileResponse(path, headers={"cache-control": "public, max-age=86400"})


def swagger_assets() -> dict[str, Path] | None:
    """{file name: path} of the Swagger UI files ``/docs`` needs, from ``swagger_ui_bundle``
    (Swagger UI 5 or later: FastAPI writes OpenAPI 3.1, which version 4 cannot show)."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    root = Path(str(swagger_ui_bundle.swagger_ui_path))
    major = root.name.removeprefix("swagger-ui-").split(".")[0]
    files = {name: root / name for name in _SWAGGER_FILES}
    if not major.isdigit() or int(major) < 5 or not all(p.is_file() for p in files.values()):
        return None
    return files


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"error", "detail"}``."""

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(
            exc.status_code,
            _REASONS.get(exc.status_code, "error"),
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _describe(exc.errors()))


def _error(status: int, error: str, detail: str, headers: Any = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _describe(errors: Any) -> str:
    """One sentence from pydantic's error list (never echoing the uploaded bytes back)."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where, name = (loc[0], loc[-1]) if loc else ("request", "?")
        if err.get("type") == "missing" and where == "body":
            parts.append(f"multipart/form-data field {name!r} is required")
        else:
            parts.append(f"{where} {name!r}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class _Guard:
    """Outermost ASGI layer: the body-size limit, the body deadline, request metrics, and the
    last-resort 500.

    Sits inside Starlette's ``ServerErrorMiddleware`` (which would answer a bare text 500 and
    re-raise), so that every answer, the 413, the 408 and the unexpected error included, is
    JSON and counted, and the server keeps serving. uvicorn has no timeout for a body that
    arrives slowly, so the body must be complete ``body_timeout`` seconds after the request
    head: each read waits only for what is left of that time, then the answer is a 408 with
    ``Connection: close``. A 413 found while reading closes the connection too (the rest
    of the body would only be read and discarded).
    """

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, max_upload_mb: float, body_timeout: float
    ) -> None:
        self.app, self.metrics, self.max_mb = app, metrics, max_upload_mb
        self.max_bytes = int(max_upload_mb * 1024 * 1024)
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _metrics_path(scope["path"])
        status = {"code": 500, "started": False}
        t0 = time.perf_counter()
        self.metrics.request_started()

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        async def reply(code: int, error: str, detail: str, headers: Any = None) -> None:
            await _error(code, error, detail, headers)(scope, receive, send_counted)

        try:
            length = _content_length(scope)
            if length is not None and length > self.max_bytes:
                await reply(413, "too_large", self._too_large(length), _CLOSE)
                return
            await self.app(scope, self._guarded(receive, t0), send_counted)
        except _BadLength as e:
            await reply(400, "bad_request", str(e), _CLOSE)
        except ClientDisconnect:
            status["code"] = 499  # nginx's code for "client closed the request"; nothing to send
        except HTTPException as e:  # raised while reading, outside FastAPI's handlers
            if not status["started"]:
                reason = _REASONS.get(e.status_code, "error")
                await reply(e.status_code, reason, str(e.detail), e.headers)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope["path"])
            if not status["started"]:
                await reply(500, "internal_error", "the server failed to handle this request")
        finally:
            self.metrics.request_finished(path, int(status["code"]), time.perf_counter() - t0)

    def _guarded(self, receive: Any, t0: float) -> Callable[[], Awaitable[Message]]:
        """``receive`` with the size limit and the deadline, until the body is complete."""
        deadline = t0 + self.body_timeout
        seen, done = 0, False

        async def guarded_receive() -> Message:
            nonlocal seen, done
            if done:  # later reads only wait for a disconnect: no deadline
                return await receive()
            try:
                left = max(0.0, deadline - time.perf_counter())
                message = await asyncio.wait_for(receive(), left)
            except asyncio.TimeoutError:
                detail = f"the request body did not arrive within {self.body_timeout:g} s"
                raise HTTPException(408, detail, headers=_CLOSE) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._too_large(seen, more=True), headers=_CLOSE)
                done = not message.get("more_body", False)
            return message

        return guarded_receive

    def _too_large(self, size: int, more: bool = False) -> str:
        got = f"more than {self.max_bytes:,}" if more else f"{size:,}"
        return f"request body of {got} bytes is over the {self.max_mb:g} MB upload limit"


_CLOSE = {"connection": "close"}


def _metrics_path(path: str) -> str:
    if path in KNOWN_PATHS:
        return path
    return DOCS_ASSETS if path.startswith(DOCS_ASSETS) else "other"


class _BadLength(ValueError):
    pass


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                n = int(value)
            except ValueError:
                raise _BadLength("Content-Length is not a number") from None
            if n < 0:
                raise _BadLength("Content-Length is negative")
            return n
    return None
