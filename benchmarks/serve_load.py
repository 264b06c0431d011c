"""Load test of `cnnbench serve`: requests/s, p50/p99 latency and errors per concurrency level.

    python benchmarks/serve_load.py runs/lenet                     # levels 1, 8, 32; 10 s each
    python benchmarks/serve_load.py runs/lenet --micro-batch 8     # the same, micro-batched
    python benchmarks/serve_load.py                                # an untrained LeNet-5

Starts the server on a free loopback port (a subprocess: `python -m cnnbench serve`), warms
it up, then for each level runs N concurrent clients (asyncio + one httpx connection each)
that POST the same image to /predict back to back, for ``--duration`` seconds or
``--max-requests`` requests, whichever comes first. Latency is client-side (send to full
response). The server is stopped at the end, also on errors or Ctrl-C. The clients run on
the same machine as the server and take CPU from it: on a small machine the figures are a
floor, and they should be compared only between runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


async def _level(url: str, image: bytes, clients: int, duration: float, max_requests: int) -> dict:
    latencies: list[float] = []
    errors = 0
    issued = 0
    stop_at = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one_client() -> None:
            nonlocal errors, issued
            while time.perf_counter() < stop_at and issued < max_requests:
                issued += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        "/predict", files={"file": ("load.png", image, "image/png")}
                    )
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    return {
        "clients": clients,
        "requests": len(lat) + errors,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2) if lat else None,
        "p99_ms": round(q[98] * 1000, 2) if lat else None,
        "errors": errors,
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def start_server(run: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "cnnbench",
        "serve",
        str(run),
        "--port",
        str(port),
        "--backend",
        args.backend,
        "--log-level",
        "warning",
        "--micro-batch",
        str(args.micro_batch),
        "--batch-wait-ms",
        str(args.batch_wait_ms),
    ]
    if args.workers_threads:
        cmd += ["--workers-threads", str(args.workers_threads)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sys.stderr)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return httpx.get(url + "/model", timeout=5).json()
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    image = args.image.read_bytes() if args.image else test_image()
    with tempfile.TemporaryDirectory(prefix="cnnbench-load-") as tmp:
        run = args.run or untrained_run(Path(tmp))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(run, port, args)
        try:
            model = wait_ready(url, proc)
            for _ in range(args.warmup):
                httpx.post(url + "/predict", files={"file": ("w.png", image)}, timeout=30)
            results = [run_level(url, proc, image, n, args) for n in levels]
        finally:
            stop_server(proc)
    print_results(model, image, results)
    if args.json:
        args.json.write_text(json.dumps({"model": model, "levels": results}, indent=2) + "\n")
    return 0 if all(r["errors"] == 0 for r in results) else 1


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", type=Path, help="run directory (default: untrained LeNet-5)")
    p.add_argument(
        "--levels", default="1,8,32", help="concurrent clients per level (default: 1,8,32)"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level (default: 10)")
    p.add_argument("--max-requests", type=int, default=20_000, help="requests per level at most")
    p.add_argument("--warmup", type=int, default=50, help="requests before timing (default: 50)")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    p.add_argument("--workers-threads", type=int, default=None)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--image", type=Path, default=None, help="image to send (default: 96x96 PNG)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def run_level(
    url: str, proc: subprocess.Popen, image: bytes, clients: int, args: argparse.Namespace
) -> dict:
    """One concurrency level, with the server's CPU time per request."""
    cpu0 = cpu_seconds(proc.pid)
    r = asyncio.run(_level(url, image, clients, args.duration, args.max_requests))
    cpu1 = cpu_seconds(proc.pid)
    if cpu0 is not None and cpu1 is not None and r["requests"]:
        # CPU the server spent per request: what contention does not inflate.
        r["server_cpu_ms"] = round((cpu1 - cpu0) * 1000 / r["requests"], 2)
    return r


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def print_results(model: dict, image: bytes, results: list[dict]) -> None:
    print(
        f"model {model['name']} ({model['model']}, {model['backend']}), image {len(image):,} "
        f"bytes, workers {model['workers']}, micro-batch {model['micro_batch']}; "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    print(
        f"{'clients':>8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'server CPU ms/req':>18}"
    )
    for r in results:
        print(
            f"{r['clients']:>8} {r['requests']:>9} {r['requests_per_s']:>8} "
            f"{r['p50_ms']!s:>8} {r['p99_ms']!s:>8} {r['errors']:>7} "
            f"{r.get('server_cpu_ms', '-')!s:>18}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
