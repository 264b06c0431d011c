"""DDP with torchrun on the CPU (gloo, 2 processes) equals one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from cnnbench.train import load_checkpoint

ARGS = {
    "model": "lenet5",  # no BatchNorm: per-rank batch statistics cannot differ
    "optimizer": "sgd",
    "lr": 0.05,
    "epochs": 2,
    "batch-size": 64,  # the global batch: 32 per rank with 2 processes
    "train-subset": 1024,
    "val-size": 256,
    "test-subset": 256,
    "threads": 1,
    "amp": "off",  # bf16 (the default on AMX CPUs) rounds differently per world size
    "name": "ddp",
}


def _args(runs) -> list[str]:
    out = ["-m", "cnnbench", "train", "--runs-dir", str(runs), "--quiet",
           "--model-arg=activation=relu", "--model-arg=pool=max"]  # fmt: skip
    for k, v in ARGS.items():
        out += [f"--{k}", str(v)]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_process_ddp_matches_single_process(tmp_path, data_dir):
    env = {**os.environ, "CNNBENCH_DATA": str(data_dir)}
    single = subprocess.run([sys.executable, *_args(tmp_path / "single")], env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *_args(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    a = load_checkpoint(tmp_path / "single" / "ddp" / "last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "ddp" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    sa = json.loads((tmp_path / "single" / "ddp" / "summary.json").read_text())
    sb = json.loads((tmp_path / "ddp" / "ddp" / "summary.json").read_text())
    assert sb["world_size"] == 2 and sa["world_size"] == 1
    for ra, rb in zip(sa and a["metrics"], b["metrics"], strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
        assert rb["val_acc"] == pytest.approx(ra["val_acc"], abs=2 / 256)
    # only rank 0 wrote: one metrics line per epoch, no stray temp files
    lines = (tmp_path / "ddp" / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert not list((tmp_path / "ddp" / "ddp").glob(".*tmp"))
