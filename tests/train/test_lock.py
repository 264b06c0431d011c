"""One trainer per run directory: the trainer holds the run's lock from start to summary."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cnnbench.cli import main
from cnnbench.rundir import RunDir, RunLockedError
from cnnbench.train import load_config, train

TINY = {
    "model": "lenet5",
    "dataset": "cifar10",
    "epochs": 2,
    "batch_size": 100,
    "train_subset": 400,
    "val_size": 200,
    "test_subset": 200,
    "threads": 1,
    "name": "tiny",
}

# Holds the lock of run directory argv[1] until stdin closes (another trainer, as the lock
# sees it: another process).
HOLDER = textwrap.dedent(
    """
    import os, sys
    from cnnbench.rundir import RunDir
    with RunDir(sys.argv[1]).lock():
        print(os.getpid(), flush=True)
        sys.stdin.read()
    """
)


def test_a_second_trainer_on_a_locked_run_is_refused_in_one_line(tmp_path, capsys):
    run = RunDir(tmp_path / "runs" / "tiny")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run.path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        pid = int(holder.stdout.readline())
        argv = ["train", "--runs-dir", str(tmp_path / "runs"), "--name", "tiny", "--quiet"]
        for resume in ([], ["--resume"]):
            capsys.readouterr()
            assert main([*argv, *resume, "--model", "lenet5", "--epochs", "1"]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("cnnbench train: error: run directory ")
            assert f"locked by process {pid} on " in err and "\n" not in err
        assert [p.name for p in run.path.iterdir()] == ["train.lock"]  # nothing written
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_the_trainer_holds_the_lock_for_the_whole_run(tmp_path, data_dir):
    run = RunDir(tmp_path / "tiny")
    seen = []

    def try_lock(row):
        # A second holder (here a second lock() in this process: flock is per open file)
        # is refused at every epoch end.
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"), run.lock():
            pass
        seen.append(row["epoch"])

    config = load_config({**TINY, "data_dir": str(data_dir)})
    summary = train(config, runs_dir=tmp_path, progress=False, on_epoch_end=try_lock)
    assert seen == [1, 2] and summary["status"] == "complete"
    assert not run.lock_path.exists()  # released at the end
    with run.lock():  # and free again: a resume of the complete run takes it and returns
        pass
    again = train(config, runs_dir=tmp_path, resume=True, progress=False)
    assert again == summary


def test_a_new_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    from cnnbench.data import DataError

    empty = tmp_path / "no-data"
    empty.mkdir()
    config = load_config({**TINY, "data_dir": str(empty), "download": False})
    with pytest.raises(DataError):
        train(config, runs_dir=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs" / "tiny").exists()  # as before the lock: no empty folder
