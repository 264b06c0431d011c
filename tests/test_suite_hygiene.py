"""The test suite itself leaves nothing behind in the system temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_a_test_session_removes_the_decode_cache_it_created(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "test_probe.py").write_text(
        "import os\n"
        "def test_cache_exists():\n"
        "    assert os.path.isdir(os.environ['CNNBENCH_TEST_CACHE'])\n"
    )
    (probe / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("CNNBENCH_TEST_CACHE", "PYTEST_ADDOPTS")
    }
    env["TMPDIR"] = str(temp)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout
    assert not list(temp.glob("cnnbench-test-cache-*"))


def test_a_cache_given_by_the_caller_is_kept(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "test_probe.py").write_text("def test_nothing():\n    pass\n")
    (probe / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    given = tmp_path / "given-cache"
    given.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["CNNBENCH_TEST_CACHE"] = str(given)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert given.is_dir()
