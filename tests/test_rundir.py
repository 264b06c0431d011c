"""The run directory's lock: one holder at a time, held until its process ends, however."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

from cnnbench import rundir
from cnnbench.rundir import RunDir, RunDirError, RunLockedError

# Takes the lock of the run directory argv[1], says so, then holds it until stdin closes;
# with argv[2] == "die", exits at once without releasing anything (a killed trainer).
HOLDER = textwrap.dedent(
    """
    import os, sys
    from cnnbench.rundir import RunDir
    lock = RunDir(sys.argv[1]).lock()
    lock.__enter__()
    print("held", os.getpid(), flush=True)
    if sys.argv[2] == "die":
        os._exit(0)
    sys.stdin.read()
    lock.__exit__(None, None, None)
    """
)


@contextmanager
def held_elsewhere(run: Path, how: str = "hold"):
    """Another process holding ``run``'s lock (``how="die"``: it has died holding it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert line[:1] == ["held"], line
        if how == "die":
            proc.wait(timeout=30)
        yield int(line[1])
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path):
    run = RunDir(tmp_path / "r")
    with held_elsewhere(run.path) as pid:
        with (
            pytest.raises(RunLockedError, match=rf"locked by process {pid} on ") as err,
            run.lock(),
        ):
            pass
        assert isinstance(err.value, RunDirError)  # the CLI prints it as one line, exit 2
        assert "\n" not in str(err.value)
        holder = json.loads(run.lock_path.read_text())
        assert holder["pid"] == pid and holder["host"]
    with run.lock():  # released when its holder let go
        assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()
    assert not run.lock_path.exists()  # a released lock leaves no file


def test_the_same_process_cannot_hold_it_twice(tmp_path):
    run = RunDir(tmp_path / "r")
    refused = pytest.raises(RunLockedError, match=rf"process {os.getpid()}")
    with run.lock(), refused, RunDir(tmp_path / "r").lock():
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    run = RunDir(tmp_path / "r")
    with held_elsewhere(run.path, "die") as pid:
        assert json.loads(run.lock_path.read_text())["pid"] == pid  # left behind
    with run.lock():
        assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()


def test_the_lock_file_is_not_content_and_an_empty_new_folder_is_removed(tmp_path):
    run = RunDir(tmp_path / "new")
    with run.lock():
        assert run.path.is_dir() and not run.exists()  # only the lock file: still empty
    assert not run.path.exists()  # created for the lock, left empty: removed again
    run.path.mkdir()
    (run.path / "config.yaml").write_text("model: lenet5\n")
    with run.lock():
        assert run.exists()
    assert run.exists()  # a folder with content is never removed
    (run.path / "config.yaml").unlink()
    with run.lock():
        pass
    assert run.path.is_dir()  # it existed before the lock: kept, even empty


def test_an_exception_in_the_block_releases_the_lock(tmp_path):
    run = RunDir(tmp_path / "r")
    with pytest.raises(KeyError), run.lock():
        raise KeyError("boom")
    with run.lock():
        pass


def test_without_fcntl_the_file_itself_is_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "fcntl", None)
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    with run.lock(), pytest.raises(RunLockedError, match=rf"process {os.getpid()}"), run.lock():
        pass
    assert not run.lock_path.exists()
    # A lock file whose process is gone from this host is stale: taken over.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    holder = {"pid": int(dead.stdout), "host": rundir.socket.gethostname()}
    run.lock_path.write_text(json.dumps(holder))
    with run.lock():
        assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()
    # One whose process runs, or that was taken on another host, is refused.
    for other in ({**holder, "pid": os.getppid()}, {**holder, "host": "elsewhere"}):
        run.lock_path.write_text(json.dumps(other))
        refused = f"process {other['pid']} on {other['host']}"
        with pytest.raises(RunLockedError, match=refused), run.lock():
            pass
