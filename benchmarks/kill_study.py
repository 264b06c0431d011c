"""Kill a study's main process at random moments; check nothing is left and it resumes exactly.

A tiny study (LeNet-5 with SGD and with Adam, 1,000 CIFAR-10 training images, 2 epochs,
``--workers 2``, latency measured after training, no report) is run once uninterrupted: the
reference. Then, ``-n`` times, in a fresh folder: start the same study, send SIGKILL or SIGTERM
(alternately) to its MAIN PID only (the study runs in a session of its own, as under
``timeout``, an OOM kill or a batch scheduler), at a random moment of the reference's wall
time, and check

- that every process the study had started (pool workers, the resource tracker, latency
  workers) has exited within ``--grace`` seconds;
- which ``cnnbench-*`` temp folders and ``train.lock`` files are left;
- that the same command, run again, completes, and that its summaries and metrics equal the
  reference's exactly (test and validation accuracy, best epoch, the per-epoch losses and
  accuracies, and the epoch sequence [1, 2]); after it, no temp folder is left either.

Processes are watched through psutil when it is installed, else /proc (Linux). Prints one
row per kill; exits 1 when a kill left a process behind or a resumed study differs.

    CNNBENCH_DATA=/work/shared/data nice -n 15 python benchmarks/kill_study.py -n 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STUDY = {
    "name": "kill",
    "base": {
        "model": "lenet5",
        "dataset": "cifar10",
        "epochs": 2,
        "batch_size": 50,
        "train_subset": 1000,
        "val_size": 200,
        "test_subset": 500,
        "threads": 1,
    },
    "grid": {"optimizer": ["sgd", "adam"]},
}
# What must be identical after a resume: summary fields and, per epoch, these metrics.
SUMMARY_KEYS = ("test_acc", "test_loss", "best_val_acc", "best_epoch", "final_val_acc", "epochs")
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


# --- processes ------------------------------------------------------------------------------
def _proc_table() -> dict[int, tuple[int, str, str]]:
    """{pid: (parent pid, start time, state)} of every process."""
    try:
        import psutil
    except ImportError:
        psutil = None
    table = {}
    if psutil is not None:
        for p in psutil.process_iter(["ppid", "create_time", "status"]):
            info = p.info
            state = "Z" if info["status"] == psutil.STATUS_ZOMBIE else "R"
            table[p.pid] = (info["ppid"], str(info["create_time"]), state)
        return table
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # state, ppid, ..., starttime (22nd)
        table[int(entry.name)] = (int(fields[1]), fields[19], fields[0])
    return table


def descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of every live process below ``root``."""
    table = _proc_table()
    found: set[tuple[int, str]] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start, state) in table.items():
            if ppid == parent and state not in ("Z", "X"):
                found.add((pid, start))
                frontier.append(pid)
    return found


def still_alive(procs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Those of ``procs`` still running (same PID and start time, not a zombie)."""
    table = _proc_table()
    return {
        (pid, start)
        for pid, start in procs
        if pid in table and table[pid][1] == start and table[pid][2] not in ("Z", "X")
    }


# --- one study ------------------------------------------------------------------------------
@dataclass
class Trial:
    n: int
    sig: str
    at_s: float
    phase: str = ""
    exit_code: int | None = None
    exit_s: float | None = None
    left: int = 0  # processes still alive after the grace period
    gone_s: float | None = None  # until every child had exited
    tmp_after_kill: int = 0
    locks_after_kill: int = 0
    resume_code: int | None = None
    tmp_after_resume: int = 0
    same: bool = False
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.left == 0 and self.resume_code == 0 and self.same and not self.tmp_after_resume


def study_command(study: Path, runs: Path, data_dir: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "cnnbench", "study", str(study), "--runs-dir", str(runs),
           "--workers", "2", "--no-report", "--quiet"]  # fmt: skip
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def environment(tmp: Path) -> dict[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp)}  # the study's own temp folder, to count leftovers


def outcome(folder: Path) -> dict[str, Any]:
    """What must match between two studies: per run, summary fields and per-epoch rows."""
    out = {}
    for run in sorted(p for p in folder.iterdir() if p.is_dir()):
        summary = json.loads((run / "summary.json").read_text())
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        out[run.name] = {
            **{k: summary.get(k) for k in SUMMARY_KEYS},
            "rows": [{k: r.get(k) for k in EPOCH_KEYS} for r in rows],
        }
    return out


def compare(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    if sorted(got) != sorted(want):
        return [f"runs {sorted(got)} != {sorted(want)}"]
    diffs = []
    for name in want:
        for key, value in want[name].items():
            if got[name][key] != value:
                diffs.append(f"{name}.{key}: {got[name][key]} != {value}")
    return diffs


def phase(folder: Path) -> str:
    """What the study was doing, judged from its files."""
    runs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    if not runs:
        return "setup"
    if not all((r / "summary.json").is_file() for r in runs) or len(runs) < 2:
        return "training"
    if not all((r / "bench.json").is_file() for r in runs):
        return "latency"
    return "finishing"


def kill_once(trial: Trial, root: Path, study: Path, data_dir: str | None, grace: float) -> None:
    runs, tmp = root / "runs", root / "tmp"
    cmd, env = study_command(study, runs, data_dir), environment(tmp)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    seen: set[tuple[int, str]] = set()
    start = time.monotonic()
    while time.monotonic() - start < trial.at_s and proc.poll() is None:
        seen |= descendants(proc.pid)
        time.sleep(0.05)
    trial.phase = phase(runs / STUDY["name"]) if proc.poll() is None else "done before"
    killed = time.monotonic()
    if proc.poll() is None:
        seen |= descendants(proc.pid)
        proc.send_signal(signal.SIGKILL if trial.sig == "KILL" else signal.SIGTERM)
    try:
        trial.exit_code = proc.wait(timeout=grace + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        trial.exit_code = proc.wait()
    trial.exit_s = time.monotonic() - killed
    proc.stderr.close()
    while still_alive(seen) and time.monotonic() - killed < grace:
        time.sleep(0.1)
    left = still_alive(seen)
    trial.left, trial.gone_s = len(left), None if left else time.monotonic() - killed
    for pid, _ in left:  # leave the machine clean for the next kill
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    trial.tmp_after_kill = len(list(tmp.glob("cnnbench-*")))
    trial.locks_after_kill = len(list(runs.glob("*/*/train.lock")))


def resume(trial: Trial, root: Path, study: Path, data_dir: str | None, want: dict) -> None:
    runs, tmp = root / "runs", root / "tmp"
    done = subprocess.run(study_command(study, runs, data_dir), env=environment(tmp),
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    trial.resume_code = done.returncode
    trial.tmp_after_resume = len(list(tmp.glob("cnnbench-*")))
    if done.returncode != 0:
        trial.differences = [done.stderr.strip().splitlines()[-1] if done.stderr else "failed"]
        return
    trial.differences = compare(outcome(runs / STUDY["name"]), want)
    trial.same = not trial.differences


# --- the table ------------------------------------------------------------------------------
COLUMNS = ("#", "signal", "at s", "phase", "exit", "exit s", "left", "gone s", "tmp",
           "locks", "resume", "tmp after", "same")  # fmt: skip


def row(t: Trial) -> list[str]:
    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}"

    return [str(t.n), t.sig, s(t.at_s), t.phase, str(t.exit_code), s(t.exit_s), str(t.left),
            s(t.gone_s), str(t.tmp_after_kill), str(t.locks_after_kill), str(t.resume_code),
            str(t.tmp_after_resume), "yes" if t.same else "NO"]  # fmt: skip


def table(trials: list[Trial]) -> str:
    rows = [list(COLUMNS), *(row(t) for t in trials)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=5, help="kills (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--signals", default="KILL,TERM", help="cycled through (default KILL,TERM)")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds children may take to exit")
    ap.add_argument("--data-dir", default=os.environ.get("CNNBENCH_DATA"))
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep the folders")
    ap.add_argument("--json", type=Path, default=None, help="also write the trials here")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    signals = [s.strip().upper().removeprefix("SIG") for s in args.signals.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="kill-study-"))
    work.mkdir(parents=True, exist_ok=True)
    study = work / "kill.yaml"
    study.write_text(yaml.safe_dump(STUDY))

    t0 = time.monotonic()
    ref = subprocess.run(study_command(study, work / "ref" / "runs", args.data_dir),
                         env=environment(work / "ref" / "tmp"), capture_output=True, text=True)  # fmt: skip
    ref_s = time.monotonic() - t0
    if ref.returncode != 0:
        print(f"the uninterrupted study failed:\n{ref.stderr}", file=sys.stderr)
        return 2
    want = outcome(work / "ref" / "runs" / STUDY["name"])
    print(f"reference: uninterrupted study in {ref_s:.1f} s (load {_loadavg()}); "
          f"{args.n} kills at random moments in [0.5, {0.95 * ref_s:.1f}] s", flush=True)  # fmt: skip

    trials = []
    for i in range(args.n):
        trial = Trial(i + 1, signals[i % len(signals)], round(rng.uniform(0.5, 0.95 * ref_s), 1))
        root = work / f"kill-{i + 1}"
        kill_once(trial, root, study, args.data_dir, args.grace)
        resume(trial, root, study, args.data_dir, want)
        trials.append(trial)
        print(f"kill {trial.n}: {'ok' if trial.ok else 'FAILED ' + '; '.join(trial.differences)}",
              flush=True)  # fmt: skip
    print()
    print(table(trials))
    bad = [t for t in trials if not t.ok]
    # The work folder is kept when asked (--keep) or when a kill failed (to look at).
    if args.keep is None and not bad:
        shutil.rmtree(work, ignore_errors=True)
    kept = f"folders in {work}" if work.exists() else "work folder removed"
    print(f"\n{len(trials) - len(bad)} of {len(trials)} kills: nothing left behind and the resumed "
          f"study identical to the uninterrupted one (load {_loadavg()}; {kept})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps([t.__dict__ for t in trials], indent=2))
    return 1 if bad else 0


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
