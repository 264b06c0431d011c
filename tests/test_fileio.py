"""Atomic writes: all or nothing, and the file mode a plain ``open()`` would give."""

from __future__ import annotations

import os
import stat

import pytest

from cnnbench.fileio import write_atomic, write_text_atomic


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_the_umask_mode_not_mkstemps_600(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "card.json"
        write_text_atomic(target, "{}")
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert _mode(target) == _mode(plain) == 0o644


def test_existing_file_keeps_its_mode(tmp_path) -> None:
    target = tmp_path / "weights.pt"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_atomic(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o640


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")

    def boom(f) -> None:
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
