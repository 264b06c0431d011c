"""`cnnbench serve`: the FastAPI inference service of ``cnnbench.serve``, run by uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cnnbench.cli import UserError
    from cnnbench.cli.bench import run_arg
    from cnnbench.rundir import RunDirError
    from cnnbench.serve import ModelLoadError, create_app
    from cnnbench.serve.protocol import protocol_class

    positive = ("max_upload_mb", "workers_threads", "micro_batch", "max_pixels")
    positive += ("large_decodes", "body_timeout")
    for name in (*positive, "batch_wait_ms"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "batch_wait_ms" else 1e-9):
            raise UserError(f"--{name.replace('_', '-')} must be positive (got {value})")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535 (got {args.port})")
    run = run_arg(args.run)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # One warning per malformed multipart body (already answered 400/422) would let any
    # client fill the server's log.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    if not _is_loopback(args.host):
        print(
            f"cnnbench serve: warning: listening on {args.host}, reachable from other "
            "machines; the service has no authentication",
            file=sys.stderr,
        )
    try:
        app = create_app(
            run,
            backend=args.backend,
            max_upload_mb=args.max_upload_mb,
            workers=args.workers_threads,
            max_pixels=args.max_pixels,
            large_decodes=args.large_decodes,
            body_timeout=args.body_timeout,
            micro_batch=args.micro_batch,
            batch_wait_ms=args.batch_wait_ms,
        )
    except (ModelLoadError, RunDirError) as e:
        raise UserError(str(e)) from e
    model = app.state.model
    print(
        f"serving {model.name} ({model.model}, {model.backend}) on http://{args.host}:{args.port}/",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        http=protocol_class(head_timeout=args.body_timeout),  # JSON errors, head deadline
    )
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(sub: argparse._SubParsersAction) -> None:
    """Add the serve sub-command."""
    p = sub.add_parser(
        "serve",
        help="real-time inference service with a web page (FastAPI + uvicorn)",
        description="Serve a trained run over HTTP: POST /predict (multipart field 'file'), "
        "POST /predict/batch (fields 'files'), GET /health, /model, /metrics (Prometheus), "
        "and a web page at /. The model is loaded once; with the onnxruntime backend "
        "RUN/export/model.onnx is reused, or exported first if absent.",
    )
    p.add_argument("run", type=Path, help="run directory (runs/<name>) or a zoo model name")
    p.add_argument(
        "--backend",
        choices=("onnxruntime", "torch"),
        default="onnxruntime",
        help="inference runtime (default: onnxruntime)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    _add_capacity_options(p)
    p.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    p.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="log every request (default: off)",
    )
    p.set_defaults(func=_cmd_serve)


def _add_capacity_options(p: argparse.ArgumentParser) -> None:
    """How much the service takes at once: upload size, pixels, threads, time, batching."""
    from cnnbench.serve.limits import (
        DEFAULT_BODY_TIMEOUT,
        DEFAULT_LARGE_DECODES,
        DEFAULT_MAX_PIXELS,
        DEFAULT_WORKERS,
    )

    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=10.0,
        help="largest request body accepted, in MB; larger: 413 (default: 10)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="P",
        help="largest image decoded, in pixels, read from its header before decoding; "
        "larger: 413 (default: %(default)s = 2048 x 2048; the models take 32x32 to "
        "224x224 inputs, so more costs memory and gains nothing: a decoded 4 MP RGBA image "
        "is 17 MB per copy; JPEGs count after 1/8-scale decoding, so a 12 MP photo passes)",
    )
    p.add_argument(
        "--large-decodes",
        type=int,
        default=DEFAULT_LARGE_DECODES,
        metavar="N",
        help="images over 1 MP decoded at once; the others wait (default: %(default)s)",
    )
    p.add_argument(
        "--workers-threads",
        type=int,
        default=None,
        metavar="N",
        help=f"threads that decode and predict (default: {DEFAULT_WORKERS}, or the number "
        "of cores if fewer)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="S",
        help="seconds a request head, and then its body, may take to arrive; slower: 408 "
        "and the connection is closed (default: %(default)g; 10 MB at 4 Mbit/s is 20 s)",
    )
    p.add_argument(
        "--micro-batch",
        type=int,
        default=1,
        metavar="B",
        help="group up to B concurrent requests into one model call (default: 1, off)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=2.0,
        metavar="T",
        help="with --micro-batch, wait at most T ms for a batch to fill (default: 2)",
    )
