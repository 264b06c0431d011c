"""The test suite itself leaves nothing behind in the system temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def run_probe(tmp_path: Path, test_source: str, **env: str) -> subprocess.CompletedProcess:
    """A pytest session of one test file under this suite's conftest, with ``env`` set and the
    caller's CNNBENCH_TEST_CACHE / PYTEST_ADDOPTS removed; it must pass."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "test_probe.py").write_text(test_source)
    (probe / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    base = {
        k: v for k, v in os.environ.items() if k not in ("CNNBENCH_TEST_CACHE", "PYTEST_ADDOPTS")
    }
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
        capture_output=True, text=True, env={**base, **env}, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_a_test_session_removes_the_decode_cache_it_created(tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    out = run_probe(
        tmp_path,
        "import os\n"
        "def test_cache_exists():\n"
        "    assert os.path.isdir(os.environ['CNNBENCH_TEST_CACHE'])\n",
        TMPDIR=str(temp),
    )
    assert "1 passed" in out.stdout
    assert not list(temp.glob("cnnbench-test-cache-*"))


def test_a_cache_given_by_the_caller_is_kept(tmp_path):
    given = tmp_path / "given-cache"
    given.mkdir()
    run_probe(tmp_path, "def test_nothing():\n    pass\n", CNNBENCH_TEST_CACHE=str(given))
    assert given.is_dir()
