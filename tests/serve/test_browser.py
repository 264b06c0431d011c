"""The web page in a real headless Chromium against `cnnbench serve` in a subprocess.

Set ``CNNBENCH_SERVE_SCREENSHOT=path.png`` to keep a copy of the screenshot (the docs use it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageStat

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(run_dir, onnx_model, tmp_path_factory):
    """`python -m cnnbench serve` on a free loopback port (reusing the ONNX export)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "cnnbench", "serve", str(run_dir), "--port", str(port)]
    cmd += ["--workers-threads", "1", "--log-level", "warning"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_page_classifies_an_upload(browser, server, cifar_images, tmp_path):
    image = tmp_path / "cat.png"
    cifar_images[0].resize((256, 256), Image.Resampling.BICUBIC).save(image)
    page = browser.new_page(viewport={"width": 900, "height": 720})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('lenet5')")
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#chart .row:nth-child(5)", timeout=15_000)
    rows = page.locator("#chart .row")
    assert rows.count() == 5
    labels = [rows.nth(i).locator(".label").inner_text() for i in range(5)]
    model = httpx.get(server + "/model").json()
    assert set(labels) <= set(model["labels"]) and len(set(labels)) == 5
    widths = [
        rows.nth(i).locator(".bar > span").evaluate("e => e.getBoundingClientRect().width")
        for i in range(5)
    ]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    assert "inference" in page.inner_text("#latency") and " ms" in page.inner_text("#latency")
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert not errors
    assert all(u.startswith(server) or u.startswith(("blob:", "data:")) for u in requests), requests

    img = Image.open(shot).convert("RGB")
    assert img.size[0] >= 800 and shot.stat().st_size > 10_000
    assert max(hi - lo for lo, hi in img.getextrema()) > 100  # not a blank page
    assert max(ImageStat.Stat(img).stddev) > 10
    if target := os.environ.get("CNNBENCH_SERVE_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)

    # A bad file shows the server's error message, and the page keeps working afterwards.
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#out .error", timeout=10_000)
    assert "415" in page.inner_text("#out .error")
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#chart .row:nth-child(5)", timeout=15_000)
    page.close()


def test_page_accepts_a_dropped_file(browser, server, cifar_images, encode):
    page = browser.new_page()
    page.goto(server + "/")
    data = list(encode(cifar_images[1], "PNG"))
    page.evaluate(
        """(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"}));
            document.getElementById("drop").dispatchEvent(
                new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        data,
    )
    page.wait_for_selector("#chart .row:nth-child(5)", timeout=15_000)
    page.close()
