"""Hostile uploads against a running `cnnbench serve`: no 5xx, and memory that comes back.

    python benchmarks/serve_fuzz.py                         # zoo fastnet_small-cifar10, 1,000 uploads
    python benchmarks/serve_fuzz.py RUN --uploads 500 --rounds 4 --clients 8  # RSS per round
    python benchmarks/serve_fuzz.py RUN --serve-arg=--workers-threads=8 --json out.json

RUN is a run directory or a zoo name. The server is started as a subprocess
(``python -m cnnbench serve RUN``, ONNX Runtime) on a free loopback port, polled until
``/health`` answers, and stopped at the end. Its resident memory (``VmRSS`` of the server
process, from /proc) is read right after start-up (the baseline of the ONNX server), after
20 good requests (the start of the measurement), and after the hostile uploads (once the
server has been idle for 2 s); ``VmHWM`` gives the peak.

The uploads (seeded, cycled through these kinds, ``--clients`` at a time):

- random bytes; truncated and bit-flipped PNG / JPEG / WebP / BMP files;
- decompression bombs: a 6 KB 1-bit 7000 x 7000 PNG, a 7000 x 7000 RGBA PNG, PNG headers
  claiming up to 2^31 - 1 pixels a side, 0 x 0 headers; 32 bombs in one /predict/batch;
- images just under the pixel limit (2048 x 2048 RGBA and 1-bit PNG: decoded in full)
  and a 12 MP JPEG (decoded at 1/8 scale);
- odd modes: 1, P, P with transparency, L, LA, RGBA, I;16, CMYK JPEG;
- odd multipart forms: wrong field name, no filename, broken or missing boundary, truncated
  body, no multipart at all, an empty body, many fields.

Printed: answers by status, the 5xx count (the target is 0), transport failures, RSS at
start-up / before / after / peak and the growth (target < 50 MB), and /health afterwards.
Exit code 1 when any answer was a 5xx, a connection failed, /health failed after, or the
RSS grew by more than ``--max-growth-mb``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BOUNDARY = "cnnbench-fuzz-91c2"


# --- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` field in kB (VmRSS: resident now, VmHWM: peak)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def start_server(run: str, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cnnbench", "serve", run, "--port", str(port)]
    cmd += ["--log-level", "warning", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=None)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not answer /health in time")


# --- the uploads -------------------------------------------------------------------------


def encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header(width: int, height: int, depth: int = 8, color: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 256))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = BOUNDARY) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def fixed_files() -> dict[str, bytes]:
    """The expensive files, made once."""
    from PIL import Image

    print("building the test files ...", file=sys.stderr)
    grad = Image.radial_gradient("L")
    photo = Image.merge("RGB", [grad, grad.rotate(90), grad.rotate(180)]).resize((160, 120))
    rgba_big = Image.merge("RGBA", [grad.resize((7000, 7000))] * 4)
    files = {
        "bomb_1bit": encode(Image.new("1", (7000, 7000)), "PNG"),
        "bomb_rgba": encode(rgba_big, "PNG"),
        "limit_rgba": encode(Image.merge("RGBA", [grad.resize((2048, 2048))] * 4), "PNG"),
        "limit_1bit": encode(grad.resize((2048, 2048)).convert("1"), "PNG"),
        "jpeg_12mp": encode(photo.resize((4000, 3000)), "JPEG", quality=80),
        "good": encode(photo, "PNG"),
    }
    for fmt in ("PNG", "JPEG", "WEBP", "BMP"):
        files[f"seed_{fmt}"] = encode(photo, fmt)
    modes = {
        "1": photo.convert("1"),
        "P": photo.convert("P"),
        "L": photo.convert("L"),
        "LA": photo.convert("LA"),
        "RGBA": photo.convert("RGBA"),
        "I;16": Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257),
    }
    for mode, img in modes.items():
        files[f"mode_{mode}"] = encode(img, "PNG")
    files["mode_Pt"] = encode(photo.convert("P"), "PNG", transparency=0)
    files["mode_CMYK"] = encode(photo.convert("CMYK"), "JPEG")
    return files


def hostile(i: int, rng: np.random.Generator, files: dict[str, bytes]) -> tuple[str, str, dict]:
    """(kind, path, httpx request arguments) of upload number ``i``."""
    kinds = [
        "random",
        "truncated",
        "flipped",
        "bomb",
        "header",
        "limit",
        "mode",
        "form",
        "batch",
    ]
    kind = kinds[i % len(kinds)]
    if kind == "random":
        return kind, "/predict", upload(rng.bytes(int(rng.integers(0, 4096))))
    if kind in ("truncated", "flipped"):
        data = bytearray(files[f"seed_{rng.choice(['PNG', 'JPEG', 'WEBP', 'BMP'])}"])
        if kind == "flipped":
            for at in rng.integers(0, len(data), int(rng.integers(1, 16))):
                data[at] = int(rng.integers(0, 256))
        else:
            data = data[: int(rng.integers(1, len(data)))]
        return kind, "/predict", upload(bytes(data))
    if kind == "bomb":
        return kind, "/predict", upload(files[str(rng.choice(["bomb_1bit", "bomb_rgba"]))])
    if kind == "header":
        side = [0, 1, 3000, 7000, 65535, 2**31 - 1]
        w, h = (int(rng.choice(side)) for _ in range(2))
        depth, color = int(rng.choice([1, 8, 16])), int(rng.choice([0, 2, 3, 6]))
        return kind, "/predict", upload(png_header(w, h, depth, color))
    if kind == "limit":
        name = str(rng.choice(["limit_rgba", "limit_1bit", "jpeg_12mp"]))
        return kind, "/predict", upload(files[name])
    if kind == "mode":
        names = [k for k in files if k.startswith("mode_")]
        return kind, "/predict", upload(files[str(rng.choice(names))])
    if kind == "batch":
        pick = ["bomb_1bit", "good", "mode_CMYK", "seed_WEBP"]
        parts = [("files", f"{j}.png", files[str(rng.choice(pick))]) for j in range(32)]
        return kind, "/predict/batch", raw_form(multipart(parts))
    return kind, "/predict", odd_form(int(rng.integers(0, 8)), files["good"], rng)


def upload(data: bytes) -> dict:
    return {"files": {"file": ("upload.bin", data)}}


def raw_form(body: bytes, boundary: str = BOUNDARY) -> dict:
    return {
        "content": body,
        "headers": {"content-type": f"multipart/form-data; boundary={boundary}"},
    }


def odd_form(which: int, good: bytes, rng: np.random.Generator) -> dict:
    if which == 0:
        return raw_form(multipart([("image", "a.png", good)]))  # wrong field name
    if which == 1:
        return raw_form(multipart([("file", None, good)]))  # no filename
    if which == 2:
        return raw_form(multipart([("file", "a.png", good)]), boundary="other")  # wrong boundary
    if which == 3:
        body = multipart([("file", "a.png", good)])
        return raw_form(body[: int(rng.integers(1, len(body)))])  # truncated form
    if which == 4:
        return {"content": good, "headers": {"content-type": "image/png"}}  # no multipart
    if which == 5:
        return {"content": b"", "headers": {"content-type": "multipart/form-data"}}
    if which == 6:
        parts = [(f"f{j}", None, b"x" * 10) for j in range(900)] + [("file", "a.png", good)]
        return raw_form(multipart(parts))  # many fields
    return raw_form(multipart([("file", "a.png", good)]).replace(b"\r\n", b"\n"))  # bare LF


# --- the run -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import httpx

    args = parse_args(argv)
    files = fixed_files()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.run, port, args.serve_arg)
    try:
        wait_ready(url, proc)
        time.sleep(1.0)
        rss_startup = status_kb(proc.pid, "VmRSS")
        with httpx.Client(base_url=url, timeout=args.timeout) as c:
            for _ in range(20):
                c.post("/predict", files={"file": ("good.png", files["good"])})
        time.sleep(1.0)
        rss_before = status_kb(proc.pid, "VmRSS")
        codes, failures, by_kind = Counter(), Counter(), {}
        rss_rounds = []
        for round_ in range(args.rounds):
            c_, f_, k_ = fire(url, files, args, seed=args.seed + round_)
            codes.update(c_)
            failures.update(f_)
            for kind, counts in k_.items():
                by_kind.setdefault(kind, Counter()).update(counts)
            time.sleep(2.0)
            rss_rounds.append(status_kb(proc.pid, "VmRSS") / 1024)
        rss_after, rss_peak = status_kb(proc.pid, "VmRSS"), status_kb(proc.pid, "VmHWM")
        health = health_after(url, files["good"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    result = {
        "run": args.run,
        "uploads": args.uploads,
        "clients": args.clients,
        "serve_args": args.serve_arg,
        "status_counts": dict(sorted(codes.items())),
        "server_errors_5xx": sum(n for code, n in codes.items() if code >= 500),
        "transport_failures": dict(failures),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "rounds": args.rounds,
        "rss_after_each_round_mb": rss_rounds,
        "rss_startup_mb": rss_startup / 1024,
        "rss_before_mb": rss_before / 1024,
        "rss_after_mb": rss_after / 1024,
        "rss_peak_mb": rss_peak / 1024,
        "rss_growth_mb": (rss_after - rss_before) / 1024,
        "health_after": health,
        "loadavg": os.getloadavg(),
    }
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    bad = result["server_errors_5xx"] or failures or not health
    return 1 if bad or result["rss_growth_mb"] > args.max_growth_mb else 0


def fire(url: str, files: dict[str, bytes], args: argparse.Namespace, seed: int) -> tuple:
    """Send ``--uploads`` hostile uploads; (codes, transport failures, codes by kind)."""
    import httpx

    rng = np.random.default_rng(seed)
    jobs = [hostile(i, rng, files) for i in range(args.uploads)]
    codes: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    by_kind: dict[str, Counter[int]] = {}

    def send(job: tuple[str, str, dict]) -> None:
        kind, path, request = job
        try:
            with httpx.Client(base_url=url, timeout=args.timeout) as c:
                code = c.post(path, **request).status_code
        except httpx.HTTPError as e:
            failures[type(e).__name__] += 1
            return
        codes[code] += 1
        by_kind.setdefault(kind, Counter())[code] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(send, jobs))
    print(f"{args.uploads} uploads in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return codes, failures, by_kind


def health_after(url: str, good: bytes) -> bool:
    import httpx

    try:
        ok = httpx.get(url + "/health", timeout=10).status_code == 200
        r = httpx.post(url + "/predict", files={"file": ("a.png", good)}, timeout=10)
        return ok and r.status_code == 200
    except httpx.HTTPError:
        return False


def report(r: dict) -> None:
    print(f"run {r['run']}, {r['rounds']} x {r['uploads']} hostile uploads, {r['clients']} clients")
    print("answers by status: " + ", ".join(f"{k}: {v}" for k, v in r["status_counts"].items()))
    for kind, counts in r["by_kind"].items():
        print(f"  {kind:10s} " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    print(f"5xx answers: {r['server_errors_5xx']}   transport failures: {r['transport_failures']}")
    print(
        f"server RSS: {r['rss_startup_mb']:.0f} MB at start-up, {r['rss_before_mb']:.0f} MB "
        f"before, {r['rss_after_mb']:.0f} MB after (growth {r['rss_growth_mb']:+.1f} MB), "
        f"peak {r['rss_peak_mb']:.0f} MB"
    )
    if r["rounds"] > 1:
        rounds = ", ".join(f"{x:.0f}" for x in r["rss_after_each_round_mb"])
        print(f"server RSS after each round: {rounds} MB")
    print(f"/health and a good /predict afterwards: {'ok' if r['health_after'] else 'FAILED'}")
    print("load average: " + " ".join(f"{x:.2f}" for x in r["loadavg"]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", default="fastnet_small-cifar10", help="run dir or zoo name")
    p.add_argument("--uploads", type=int, default=1000, help="hostile uploads (default 1000)")
    p.add_argument("--clients", type=int, default=4, help="uploads at once (default 4)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--rounds", type=int, default=1, help="rounds of --uploads, RSS after each")
    p.add_argument("--seed", type=int, default=0, help="of round 1 (round k: seed + k - 1)")
    p.add_argument("--max-growth-mb", type=float, default=50.0, help="RSS growth allowed")
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="passed to cnnbench serve, e.g. --serve-arg=--workers-threads=8 (repeatable)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
