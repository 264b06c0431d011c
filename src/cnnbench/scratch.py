"""Private temp folders that are removed on every exit path, a kill included.

A folder made here holds a lock file its owner keeps locked while the folder is in use. A
normal exit, an exception or a SIGTERM turned into one deletes the folder; a SIGKILL cannot,
so every new folder of the same kind first deletes the ones whose lock is free (their owner
is dead). Latency measurement (``cnnbench-bench-*``) and the server's temporary ONNX export
(``cnnbench-serve-*``) use it. Imports no torch (the ONNX Runtime server uses it).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnbench.rundir import RunLockedError, exclusive_lock

OWNER_LOCK = ".owner.lock"


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private temp folder ``<prefix>*`` for the block, deleted when it ends; folders of the
    same prefix whose owner was killed are deleted first."""
    remove_orphans(prefix)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = Path(tmp)
        with exclusive_lock(folder / OWNER_LOCK, f"temp folder {folder}"):
            yield folder


def remove_orphans(prefix: str, root: str | Path | None = None) -> list[Path]:
    """Delete the ``<prefix>*`` folders under ``root`` (the system temp folder) whose owner has
    died; returns them. A folder without its lock file (being created, or made by an older
    cnnbench) is left alone; so is one whose owner is alive."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(prefix + "*"):
        owner = folder / OWNER_LOCK
        if not owner.is_file():
            continue
        try:
            with exclusive_lock(owner, f"temp folder {folder}"):
                shutil.rmtree(folder, ignore_errors=True)
        except (RunLockedError, OSError):
            continue  # alive, or gone meanwhile
        removed.append(folder)
    return removed
