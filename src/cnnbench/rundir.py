"""The run directory: the one place that names a run's files and reads them.

A run directory holds::

    config.yaml     the resolved RunConfig (what `cnnbench train --config` reads back)
    metrics.jsonl   one JSON line per epoch
    last.pt         the latest checkpoint (resume from here)
    best.pt         the checkpoint chosen on validation (the test uses it)
    summary.json    written last, atomically: the run is complete once it says so
    bench.json      batch-1 latency figures (cnnbench bench / the study)
    train.lock      only while a trainer holds the run (``RunDir.lock``): its PID and host

    zoo.json        only in a shipped (zoo) model: its card, with the sha256 of best.pt

Writers are the trainer (the first five) and the benchmark; everything else only reads,
through ``RunDir``. ``resolve(arg)`` turns what a user types (a run directory, a checkpoint
file's folder, or a zoo name such as ``fastnet_small-cifar10``) into a ``RunDir``.

One trainer at a time per run directory: ``RunDir.lock()`` holds ``train.lock`` exclusively
(``fcntl.flock``) and refuses a second holder with ``RunLockedError``, naming the holder's
PID and host. The operating system drops the lock when its process dies, however it dies,
so the file a killed trainer leaves behind is simply taken over.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from cnnbench.zoo import sha256_of

try:
    import fcntl
except ImportError:  # Windows: see _create_exclusive
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RunDir",
    "RunDirError",
    "RunLockedError",
    "checkpoint_dataset",
    "exclusive_lock",
    "is_complete",
    "read_summary",
    "resolve",
    "sha256_of",
]

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LAST = "last.pt"
BEST = "best.pt"
SUMMARY = "summary.json"
BENCH = "bench.json"
ZOO_CARD = "zoo.json"
LOCK = "train.lock"
ROBUSTNESS = "robustness.json"  # cnnbench robustness: accuracy per corruption x severity
ROBUSTNESS_FIGURES = "robustness"  # its heat map and sample grid


class RunDirError(ValueError):
    """A run directory (or zoo name) that cannot be used; the message is one line."""


class RunLockedError(RunDirError):
    """Another live process holds the lock (of a run directory); the message names it."""


class RunDir:
    """A run directory (which may not exist yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # --- file names
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def bench_path(self) -> Path:
        return self.path / BENCH

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    def checkpoint_path(self, which: str = "best") -> Path:
        """``best`` or ``last``."""
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        return self.path / (BEST if which == "best" else LAST)

    # --- state
    def exists(self) -> bool:
        """True if the folder exists and holds anything (its lock file does not count)."""
        return self.path.is_dir() and any(p.name != LOCK for p in self.path.iterdir())

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this run's exclusive lock for the block: the one trainer of the run.

        Raises RunLockedError while another process holds it (or this process, through
        another ``lock()``). The folder is created if needed, and removed again if the block
        leaves it empty (a run refused before writing anything leaves no folder behind).
        """
        created = not self.path.is_dir()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with exclusive_lock(self.lock_path, f"run directory {self.path}"):
                yield
        finally:
            if created:
                with suppress(OSError):
                    self.path.rmdir()  # only if empty

    def summary(self) -> dict[str, Any] | None:
        """The run's summary.json, or None if the run has not finished."""
        return _read_json(self.summary_path)

    def is_complete(self) -> bool:
        """A run is complete once its summary says so (written last, atomically)."""
        summary = self.summary()
        return bool(summary) and summary.get("status") == "complete"

    def config(self) -> dict[str, Any] | None:
        """The resolved config as a dict, or None if there is none (yet)."""
        import yaml

        if not self.config_path.is_file():
            return None
        try:
            data = yaml.safe_load(self.config_path.read_text())
        except (OSError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None

    def metrics(self) -> list[dict[str, Any]]:
        """Per-epoch rows of metrics.jsonl (a torn last line is skipped)."""
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def bench(self) -> dict[str, Any] | None:
        """bench.json, or None."""
        return _read_json(self.bench_path)

    @property
    def zoo_card_path(self) -> Path:
        return self.path / ZOO_CARD

    def zoo_card(self) -> dict[str, Any] | None:
        """The zoo card of a shipped model, or None for an ordinary run."""
        return _read_json(self.zoo_card_path)

    def verify(self, which: str = "best") -> None:
        """For a zoo model: refuse a checkpoint whose sha256 is not the card's."""
        card = self.zoo_card()
        if card is None:
            return
        path = self.checkpoint_path(which)
        want = card.get("sha256")
        got = sha256_of(path) if path.is_file() else None
        if got != want:
            raise RunDirError(
                f"{path}: sha256 {got} does not match its card ({want}); the weights were "
                "changed or damaged: reinstall cnnbench or re-export the model"
            )

    def load_checkpoint(self, which: str = "best", map_location: Any = "cpu") -> dict[str, Any]:
        """The checkpoint dict, loaded with ``weights_only=True`` (see train.checkpoint);
        a zoo model's file is checked against its card's sha256 first."""
        from cnnbench.train.checkpoint import load_checkpoint

        self.verify(which)
        return load_checkpoint(self.checkpoint_path(which), map_location=map_location)

    def load_model(self, which: str = "best", map_location: Any = "cpu") -> tuple[Any, dict]:
        """(model in eval mode with the checkpoint's weights, checkpoint dict)."""
        from cnnbench.models import create_model

        ckpt = self.load_checkpoint(which, map_location)
        model = create_model(**ckpt["model_spec"])
        model.load_state_dict(ckpt["model"])
        return model.eval(), ckpt


def load_model_from(
    path: str | Path, which: str = "best", map_location: Any = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, checkpoint dict) of a run directory's ``which`` checkpoint, or of
    the checkpoint file ``path`` itself."""
    path = Path(path)
    if path.is_dir():
        return RunDir(path).load_model(which, map_location)
    from cnnbench.train.checkpoint import model_from_checkpoint

    return model_from_checkpoint(path, map_location)


def checkpoint_dataset(ckpt: dict[str, Any], data_dir: str | None = None, **kw: Any) -> Any:
    """The dataset a checkpoint was trained on, at the input size it was trained at."""
    from cnnbench.data import load_dataset

    cfg = ckpt.get("config", {})
    input_size = ckpt.get("input_size") or [3, cfg.get("image_size", 32), 0]
    kw.setdefault("show_progress", False)
    return load_dataset(
        ckpt.get("dataset", cfg.get("dataset")),
        data_dir=data_dir or cfg.get("data_dir"),
        image_size=int(input_size[1]),
        label_kind=cfg.get("label_kind", "fine"),
        **kw,
    )


def resolve(arg: str | Path) -> RunDir:
    """A run directory from what a user typed: a folder, a ``.pt`` file's folder, or the name
    of a shipped zoo model (see ``cnnbench zoo``). Raises RunDirError otherwise."""
    path = Path(arg)
    if path.is_dir():
        return RunDir(path)
    if path.is_file() and path.suffix == ".pt":
        return RunDir(path.parent)
    from cnnbench import zoo

    entry = zoo.find(str(arg))
    if entry is not None:
        return RunDir(entry)
    names = ", ".join(zoo.names()) or "none shipped"
    raise RunDirError(f"{arg}: no such run directory, checkpoint or zoo model (zoo: {names})")


@contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` for the block, or raise RunLockedError naming its holder
    (``what`` says what is locked, for the message). The file records the holder's PID, host
    and start time, and is deleted on release."""
    fd = _acquire(Path(path), what)
    try:
        yield
    finally:
        # Unlinked while still held: a process that opened the old file meanwhile sees that
        # it no longer is the file at ``path`` and starts again (see _acquire).
        with suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _acquire(path: Path, what: str) -> int:
    """An open descriptor of ``path``, locked by this process; its holder is recorded."""
    while True:
        if fcntl is None:
            fd = _create_exclusive(path, what)
            break
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RunLockedError(_locked_message(path, what)) from None
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder released (and unlinked) it as we locked: lock the new one
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}  # fmt: skip
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(holder) + "\n").encode())
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)


def _create_exclusive(path: Path, what: str) -> int:
    """Without ``fcntl`` (Windows): the lock is the file itself, created exclusively. The OS
    does not drop it when its holder dies, so a lock whose holder is gone from this host is
    taken over; a holder that cannot be checked (another host) is reported, not guessed."""
    for _ in range(2):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_json(path) or {}
            if holder.get("host") != socket.gethostname() or _pid_alive(holder.get("pid")):
                break
            path.unlink(missing_ok=True)  # stale: its process is gone
    raise RunLockedError(_locked_message(path, what))


def _pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` runs on this host (True when that cannot be told)."""
    if not isinstance(pid, int):
        return True
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return bool(psutil.pid_exists(pid))
    if os.name != "posix":
        return True  # os.kill(pid, 0) is not a probe on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _locked_message(path: Path, what: str) -> str:
    holder = _read_json(path) or {}
    who = (
        f"process {holder['pid']} on {holder.get('host', '?')} (since {holder.get('since', '?')})"
        if "pid" in holder
        else "another process"
    )
    return f"{what} is locked by {who}; wait for it to finish or stop it (lock file: {path})"


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: bad JSON, or bytes that are not UTF-8
        return None
    return data if isinstance(data, dict) else None


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The summary.json of ``run_dir``, or None if the run has not finished."""
    return RunDir(run_dir).summary()


def is_complete(run_dir: str | Path) -> bool:
    """True once ``run_dir``'s summary says the run is complete."""
    return RunDir(run_dir).is_complete()
