"""Load test of `cnnbench serve` that measures the server, not its client.

    python benchmarks/serve_load.py RUN                         # 1, 8, 32 clients; 10 s each
    python benchmarks/serve_load.py RUN --levels 32 --duration 15
    python benchmarks/serve_load.py RUN --rate 400              # open loop: 400 req/s
    python benchmarks/serve_load.py RUN --micro-batch 8         # the server micro-batched
    python benchmarks/serve_load.py                             # an untrained LeNet-5
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --server-pid PID  # running one

RUN is a run directory or a zoo name (default: an untrained LeNet-5 in a temporary folder).

    --levels 1,8,32          concurrent clients per level, closed loop
    --rate R                 open loop instead: R requests due per second ...
    --connections N          ... on at most N connections (default 64)
    --duration S             seconds per level (default 10)
    --max-requests N         requests per level at most
    --timeout S              seconds per request (default 5); also what a failure counts as
    --warmup N               untimed requests first (default 50)
    --server-cpus 0          cores for the server (taskset); default: the first core, when
    --client-cpus 1          there are 2+, and the next one for this client
    --no-pin                 pin neither
    --url URL                measure a running server instead (--server-pid PID for its CPU)
    --backend, --workers-threads, --micro-batch, --batch-wait-ms   passed to cnnbench serve
    --image FILE             the image to send (default: a 96x96 PNG, ~21 KB)
    --json FILE              also write the results (with settings and load averages) here

Exit code 1 when any request failed or the server died.

The server is started as a subprocess (``taskset -c CPUS python -m cnnbench serve RUN``) on a
free loopback port, polled until ``/health`` answers, warmed up, measured, and stopped at the
end (also on errors and Ctrl-C). It inherits this script's niceness.

The client is raw asyncio HTTP/1.1, so that it costs a small fraction of what the server
does (an httpx client on the same core measured itself: 164 req/s where this one gets 800):
one keep-alive connection per client, the request (a multipart PNG upload to ``/predict``)
built once as bytes, and the response read as status line, headers and ``Content-Length``
bytes of body. Its own CPU time per request is reported, to show that it is not the limit.

- **Closed loop** (``--levels``): N clients each send a request, wait for the answer, send
  the next, for ``--duration`` seconds. Latency runs from the write of the request to the
  last byte of the answer.
- **Open loop** (``--rate``): requests are due at a fixed rate whatever the server does;
  each goes out on an idle connection. Latency runs from the time a request was *due*, so
  waiting for a connection counts (no coordinated omission); a request still waiting a
  ``--timeout`` after it was due is a timeout, never sent.

**Failures count.** Every request issued is in the percentiles: a failure (a status other
than 200, a timeout, a refused or dropped connection, a malformed answer) is counted at the
``--timeout`` value, the worst latency we wait for, so errors raise the tail instead of
vanishing from it; they are also counted by kind (``http_503``, ``timeout``, ``connect``,
``closed``, ``protocol``). After a failure the client opens a new connection.

Reported per level: requests, req/s (successful answers per second), p50/p90/p99/max ms,
errors by kind, the server process's CPU ms per request (``/proc/PID/stat`` utime + stime,
all threads, before and after the level), the client's CPU ms per request, and the load
average before and after. With other jobs on the machine the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BOUNDARY = "cnnbench-load-7e3f1a"
CONNECT_BACKOFF_S = 0.01  # pause after a failed connection, so a dead server is not spun on


# --- the test subject -------------------------------------------------------------------


def untrained_run(parent: Path) -> Path:
    """A LeNet-5 run with random weights (CIFAR-10 labels): enough to time the service."""
    from cnnbench.data import CIFAR10_CLASSES
    from cnnbench.models import create_model
    from cnnbench.rundir import RunDir
    from cnnbench.train import save_checkpoint

    model = create_model("lenet5", num_classes=10)
    run = parent / "untrained-lenet5"
    save_checkpoint(
        {
            "model": model.state_dict(),
            "model_spec": model.cnnbench_spec,
            "config": {"dataset": "cifar10", "image_size": 32, "data_dir": str(parent / "no-data")},
            "classes": list(CIFAR10_CLASSES),
            "mean": [0.5] * 3,
            "std": [0.25] * 3,
            "input_size": [3, 32, 32],
            "dataset": "cifar10",
            "epoch": 0,
        },
        RunDir(run).checkpoint_path("best"),
    )
    return run


def test_image(size: tuple[int, int] = (96, 96)) -> bytes:
    """A PNG photo-like image (smooth gradients plus noise), ~20 KB."""
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    rng = np.random.default_rng(0)
    rgb = np.stack([xx, yy, (xx + yy) / 2], axis=-1) * 200 + rng.normal(0, 12, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# --- the raw HTTP/1.1 client ------------------------------------------------------------


def predict_request(host: str, port: int, image: bytes, name: str = "load.png") -> bytes:
    """The whole ``POST /predict`` request (multipart field ``file``), built once."""
    body = (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get_request(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


class ProtocolError(Exception):
    """An answer that is not the HTTP/1.1 this client reads."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one answer: status line, headers, Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        headers[key.strip().lower()] = value.strip()
    if b"content-length" not in headers:  # uvicorn sends it for every JSON answer
        raise ProtocolError("answer without Content-Length")
    body = await reader.readexactly(int(headers[b"content-length"]))
    keep_alive = headers.get(b"connection", b"").lower() != b"close"
    return int(parts[1]), body, keep_alive


class Connection:
    """One keep-alive connection, reopened after a failure or ``Connection: close``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.streams is None:
            try:
                self.streams = await asyncio.open_connection(self.host, self.port)
            except OSError as e:
                raise ConnectionRefusedError(str(e)) from e
        reader, writer = self.streams
        writer.write(request)
        await writer.drain()
        status, body, keep_alive = await read_response(reader)
        if not keep_alive:
            self.close()
        return status, body

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def failure_kind(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connect"
    if isinstance(e, (ConnectionError, asyncio.IncompleteReadError, OSError)):
        return "closed"
    return "protocol"  # ProtocolError, LimitOverrunError, a bad Content-Length


@dataclass
class Samples:
    """Latencies (s) of every request issued, failures at the timeout, and errors by kind."""

    timeout: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def ok(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def failed(self, kind: str) -> None:
        self.latencies.append(self.timeout)
        self.errors[kind] += 1


async def timed_request(conn: Connection, request: bytes, since: float, samples: Samples) -> None:
    """Send one request on ``conn``; record its latency from ``since`` (perf_counter)."""
    left = samples.timeout - (time.perf_counter() - since)
    try:
        if left <= 0:
            raise asyncio.TimeoutError
        status, _ = await asyncio.wait_for(conn.exchange(request), left)
    except Exception as e:  # every failure is a sample, not a crash (TimeoutError included)
        conn.close()
        samples.failed(failure_kind(e))
        if isinstance(e, ConnectionRefusedError):
            await asyncio.sleep(CONNECT_BACKOFF_S)
        return
    if status == 200:
        samples.ok(time.perf_counter() - since)
    else:
        samples.failed(f"http_{status}")


# --- the two ways to load the server -----------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    request: bytes
    timeout: float


async def closed_loop(target: Target, clients: int, duration: float, max_requests: int) -> Samples:
    """``clients`` connections, each sending its next request when the last one is answered."""
    samples = Samples(target.timeout)
    stop_at = time.perf_counter() + duration
    issued = 0

    async def client() -> None:
        nonlocal issued
        conn = Connection(target.host, target.port)
        while time.perf_counter() < stop_at and issued < max_requests:
            issued += 1
            await timed_request(conn, target.request, time.perf_counter(), samples)
        conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return samples


async def open_loop(
    target: Target, rate: float, duration: float, connections: int, max_requests: int
) -> Samples:
    """Requests due every 1/rate s, each on an idle connection; latency from when it was due.

    Idle connections are reused last-in first-out, so that at a low rate the same few stay
    busy instead of each idling past the server's keep-alive timeout. When all
    ``connections`` are busy a due request waits, and the wait counts in its latency.
    """
    samples = Samples(target.timeout)
    idle: list[Connection] = []
    waiting: deque[float] = deque()
    tasks: set[asyncio.Task] = set()
    opened = 0

    async def send(conn: Connection, since: float) -> None:
        await timed_request(conn, target.request, since, samples)
        while waiting:
            await timed_request(conn, target.request, waiting.popleft(), samples)
        idle.append(conn)

    def dispatch(due: float) -> None:
        nonlocal opened
        if not idle and opened == connections:
            waiting.append(due)
            return
        if not idle:
            opened += 1
            idle.append(Connection(target.host, target.port))
        task = asyncio.create_task(send(idle.pop(), due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    start = time.perf_counter()
    for i in range(min(max_requests, max(1, round(rate * duration)))):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        dispatch(due)
    while tasks:
        await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return samples


# --- one level, measured -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, all its threads (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loadavg() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def run_level(target: Target, server_pid: int | None, args: argparse.Namespace, n: int) -> dict:
    """One level (``n`` clients, or the open-loop rate when ``args.rate``), summarised."""
    load0, own0 = loadavg(), own_cpu_seconds()
    cpu0 = cpu_seconds(server_pid) if server_pid else None
    t0 = time.perf_counter()
    if args.rate:
        loop = open_loop(target, args.rate, args.duration, args.connections, args.max_requests)
    else:
        loop = closed_loop(target, n, args.duration, args.max_requests)
    samples = asyncio.run(loop)
    elapsed = time.perf_counter() - t0
    cpu1 = cpu_seconds(server_pid) if server_pid else None
    result = summarise(samples, elapsed)
    result.update(
        mode="open" if args.rate else "closed",
        clients=args.connections if args.rate else n,
        rate=args.rate,
        client_cpu_ms=round((own_cpu_seconds() - own0) * 1000 / max(1, result["requests"]), 3),
        loadavg_start=load0,
        loadavg_end=loadavg(),
    )
    if cpu0 is not None and cpu1 is not None and result["requests"]:
        result["server_cpu_ms"] = round((cpu1 - cpu0) * 1000 / result["requests"], 3)
    return result


def summarise(samples: Samples, elapsed: float) -> dict:
    """Counts, rate of successful answers, percentiles over every request issued."""
    lat_ms = np.asarray(samples.latencies) * 1000
    failed = sum(samples.errors.values())
    out = {
        "requests": len(lat_ms),
        "seconds": round(elapsed, 2),
        "requests_per_s": round((len(lat_ms) - failed) / elapsed, 1),
    }
    for q in (50, 90, 99):
        out[f"p{q}_ms"] = round(float(np.percentile(lat_ms, q)), 2) if len(lat_ms) else None
    out["max_ms"] = round(float(lat_ms.max()), 2) if len(lat_ms) else None
    out["errors"] = failed
    out["errors_by_kind"] = dict(sorted(samples.errors.items()))
    out["failures_counted_as_ms"] = samples.timeout * 1000
    return out


# --- the server process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinning(args: argparse.Namespace) -> tuple[list[int] | None, list[int] | None]:
    """(server cores, client cores), or None for either when not pinned."""
    if args.no_pin or not hasattr(os, "sched_setaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if args.server_cpus is None and len(cores) < 2:
        return None, None
    server = _cpu_list(args.server_cpus) if args.server_cpus else cores[:1]
    if args.client_cpus:
        return server, _cpu_list(args.client_cpus)
    return server, [c for c in cores if c not in server][:1] or None


def _cpu_list(text: str) -> list[int]:
    return [int(c) for c in text.split(",")]


def start_server(
    run: Path | str, port: int, args: argparse.Namespace, cpus: list[int] | None
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cnnbench", "serve", str(run), "--port", str(port)]
    cmd += ["--backend", args.backend, "--log-level", "warning"]
    cmd += ["--micro-batch", str(args.micro_batch), "--batch-wait-ms", str(args.batch_wait_ms)]
    if args.workers_threads:
        cmd += ["--workers-threads", str(args.workers_threads)]
    if cpus is not None:
        if shutil.which("taskset") is None:
            raise SystemExit("taskset not found: install util-linux, or pass --no-pin")
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sys.stderr)


async def _get(host: str, port: int, path: str, timeout: float) -> tuple[int, bytes]:
    conn = Connection(host, port)
    try:
        return await asyncio.wait_for(conn.exchange(get_request(host, port, path)), timeout)
    finally:
        conn.close()


def wait_ready(host: str, port: int, proc: subprocess.Popen | None, timeout: float = 180) -> dict:
    """Poll ``/health`` until it answers 200; return ``/model``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if asyncio.run(_get(host, port, "/health", 1))[0] == 200:
                return json.loads(asyncio.run(_get(host, port, "/model", 5))[1])
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ProtocolError):
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the command -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    levels = [1] if args.rate else [int(x) for x in args.levels.split(",")]
    image = args.image.read_bytes() if args.image else test_image()
    server_cpus, client_cpus = pinning(args) if args.url is None else (None, None)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    with tempfile.TemporaryDirectory(prefix="cnnbench-load-") as tmp:
        proc = None
        if args.url is None:
            host, port = "127.0.0.1", free_port()
            proc = start_server(args.run or untrained_run(Path(tmp)), port, args, server_cpus)
        else:
            host, _, port_text = args.url.removeprefix("http://").rstrip("/").partition(":")
            port = int(port_text or 80)
        try:
            model = wait_ready(host, port, proc)
            target = Target(host, port, predict_request(host, port, image), args.timeout)
            if args.warmup:
                asyncio.run(closed_loop(target, 1, args.timeout * args.warmup, args.warmup))
            pid = proc.pid if proc is not None else args.server_pid
            results = [run_level(target, pid, args, n) for n in levels]
            died = proc is not None and proc.poll() is not None
        finally:
            if proc is not None:
                stop_server(proc)
    setup = {"server_cpus": server_cpus, "client_cpus": client_cpus, "image_bytes": len(image)}
    print_results(model, setup, results)
    if died:
        print("the server died during the measurement", file=sys.stderr)
    if args.json:
        doc = {"model": model, "setup": setup, "levels": results, "argv": sys.argv[1:]}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if not died and all(r["errors"] == 0 for r in results) else 1


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", nargs="?", help="run directory or zoo name (default: untrained LeNet-5)")
    p.add_argument("--levels", default="1,8,32", help="concurrent clients per level (closed loop)")
    p.add_argument("--rate", type=float, default=None, help="open loop: requests due per second")
    p.add_argument("--connections", type=int, default=64, help="open loop: connections at most")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level (default: 10)")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="requests per level at most")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default: 5)")
    p.add_argument("--warmup", type=int, default=50, help="requests before timing (default: 50)")
    p.add_argument("--server-cpus", default=None, help="cores for the server, e.g. 0 (taskset)")
    p.add_argument("--client-cpus", default=None, help="cores for this client, e.g. 1")
    p.add_argument("--no-pin", action="store_true", help="pin neither server nor client")
    p.add_argument("--url", default=None, help="measure this running server instead")
    p.add_argument("--server-pid", type=int, default=None, help="with --url: its PID, for CPU")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    p.add_argument("--workers-threads", type=int, default=None)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--image", type=Path, default=None, help="image to send (default: 96x96 PNG)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be positive")
    if args.timeout <= 0 or args.duration <= 0 or args.connections < 1:
        p.error("--timeout, --duration and --connections must be positive")
    return args


def print_results(model: dict, setup: dict, results: list[dict]) -> None:
    pin = (
        f"server on cores {setup['server_cpus']}, client on {setup['client_cpus']}"
        if setup["server_cpus"]
        else "not pinned"
    )
    print(
        f"model {model['name']} ({model['model']}, {model['backend']}), image "
        f"{setup['image_bytes']:,} bytes, workers {model['workers']}, micro-batch "
        f"{model['micro_batch']}; {pin}; {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"{'mode':>6} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'errors':>6} {'server CPU ms/req':>17} "
        f"{'client CPU ms/req':>17} {'load':>11}"
    )
    for r in results:
        mode = f"{r['rate']:g}/s" if r["rate"] else "closed"
        print(
            f"{mode:>6} {r['clients']:>7} {r['requests']:>8} {r['requests_per_s']:>7} "
            f"{r['p50_ms']!s:>8} {r['p90_ms']!s:>8} {r['p99_ms']!s:>8} {r['max_ms']!s:>8} "
            f"{r['errors']:>6} {r.get('server_cpu_ms', '-')!s:>17} {r['client_cpu_ms']!s:>17} "
            f"{r['loadavg_start']!s:>5}-{r['loadavg_end']!s:<5}"
        )
        if r["errors_by_kind"]:
            print(f"{'':>14} errors: {r['errors_by_kind']} (each counted at the timeout)")


if __name__ == "__main__":
    raise SystemExit(main())
