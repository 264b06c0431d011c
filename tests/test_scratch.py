"""Temp folders that a kill cannot leave behind for long."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from cnnbench import scratch
from cnnbench.bench.latency import SCRATCH_PREFIX
from cnnbench.serve.engine import SERVE_SCRATCH_PREFIX

HOLDER = textwrap.dedent(
    """
    import sys, time
    from cnnbench.scratch import scratch_dir
    with scratch_dir(sys.argv[1]) as folder:
        print(folder, flush=True)
        time.sleep(120)
    """
)


def test_the_folder_is_removed_when_the_block_ends(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with scratch.scratch_dir("cnnbench-x-") as folder:
        assert folder.parent == tmp_path and (folder / scratch.OWNER_LOCK).is_file()
    assert not folder.exists()


def test_a_killed_owners_folder_goes_with_the_next_of_its_kind_only(monkeypatch, tmp_path):
    env = {"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    killed = []
    for prefix in (SERVE_SCRATCH_PREFIX, SCRATCH_PREFIX):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, prefix], stdout=subprocess.PIPE,
                                text=True, env={**env, "PYTHONPATH": ":".join(sys.path)})  # fmt: skip
        try:
            killed.append(tmp_path / proc.stdout.readline().strip())
        finally:
            proc.kill()  # SIGKILL: its own cleanup cannot run
            proc.wait()
    assert all(f.is_dir() for f in killed)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with scratch.scratch_dir(SERVE_SCRATCH_PREFIX):
        pass
    assert not killed[0].exists()  # the server's own kind
    assert killed[1].is_dir()  # a measurement's folder is the measurements' to sweep
    assert scratch.remove_orphans(SCRATCH_PREFIX, tmp_path) == [killed[1]]
