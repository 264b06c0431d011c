"""Where a study's runs train: in this process, in a pool of processes, or as Ray tasks.

Every executor has the same face: ``run(wave)`` trains a list of runs and yields one
``(run name, error or None)`` per run as it ends, in the order they end. The study runner
records each outcome in one place (``StudyResult.record``), whatever trained it. Every
executor trains through ``train_one``, which trains, resumes or skips one run, so a run
directory looks the same whichever executor wrote it.

A study survives any kill of its main process. Pool workers leave with it, however it died
(``kill PID``, an OOM kill, a scheduler): each one watches its parent and unwinds its run
(releasing the run directory's lock) when the parent is gone, instead of training the runs
still queued. A SIGTERM or Ctrl-C in the main process cancels the queued runs and stops the
workers before the exception goes on; a restart then resumes every run from its checkpoint.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import std as tqdm_std

from cnnbench.train.config import RunConfig

# How one run ended: its name, and the exception it failed with (None: it trained).
Outcome = tuple[str, BaseException | None]
# What ``run`` returns; a generator, so that a caller that stops early can close it (which
# stops the runs still going).
Outcomes = Generator[Outcome, None, None]
# Seconds a stopped worker gets to unwind its run (release its lock, delete its temp files)
# before it is killed.
STOP_GRACE_S = 10.0


class Executor(Protocol):
    """Trains runs and reports how each one ended."""

    # True when runs train one after the other in this process: nothing else runs while a
    # run's latency is measured, so it can be measured as soon as the run ends.
    one_at_a_time: bool

    def run(self, wave: list[RunConfig]) -> Outcomes:
        """Train every run of ``wave``; yield each one's outcome as it ends."""
        ...


def train_one(config_json: dict[str, Any], parent: str, command: str, progress: bool) -> str:
    """Train (or resume, or skip) one run; returns its name. The entry point of every executor
    (a module-level function, so that spawned processes and Ray workers can import it)."""
    from cnnbench.train import load_config, train

    config = load_config(config_json)
    train(config, runs_dir=parent, resume=True, progress=progress, command=command)
    return config.run_name()


def worker_config(config: RunConfig, threads: int) -> dict[str, Any]:
    """A run's config for a worker process: ``threads`` unless the run sets its own."""
    cfg = config.model_dump(mode="json")
    if cfg.get("threads") is None:
        cfg["threads"] = threads
    return cfg


@dataclass
class Inline:
    """One run after the other, in this process (progress bars shown if asked)."""

    directory: Path
    command: str
    progress: bool = True
    one_at_a_time = True

    def run(self, wave: list[RunConfig]) -> Outcomes:
        for config in wave:
            cfg = config.model_dump(mode="json")
            try:
                train_one(cfg, str(self.directory), self.command, self.progress)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:
                yield config.run_name(), e
            else:
                yield config.run_name(), None


@dataclass
class ProcessPool:
    """``workers`` spawned processes, each run limited to ``threads`` CPU threads. ``job``
    trains one run in a worker (``train_one``; a module-level function)."""

    directory: Path
    command: str
    workers: int
    threads: int
    job: Callable[[dict[str, Any], str, str, bool], str] = train_one
    one_at_a_time = False

    def run(self, wave: list[RunConfig]) -> Outcomes:
        # spawn: a fresh interpreter per worker, no forked torch thread pools or CUDA state.
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
        )
        try:
            pending = {}
            for config in wave:
                cfg = worker_config(config, self.threads)
                fut = pool.submit(_pool_job, self.job, cfg, str(self.directory), self.command)
                pending[fut] = config.run_name()  # workers show no progress bars
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.exception()
        except BaseException:  # interrupted, terminated, or the caller stopped listening
            stop_pool(pool)
            raise
        pool.shutdown(wait=True)


def stop_pool(pool: ProcessPoolExecutor, grace_s: float = STOP_GRACE_S) -> None:
    """Cancel the queued runs and stop the running ones now: each worker gets SIGTERM (it
    unwinds its run), then SIGKILL after ``grace_s``. Returns once every worker has exited."""
    # ProcessPoolExecutor has no public way to stop running calls before Python 3.14
    # (terminate_workers), and shutdown() forgets the processes: take them first.
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for p in workers:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in workers:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    # The pool sees its workers gone, fails the queued runs and closes its queues (which
    # spares the "leaked semaphore" warnings of the resource tracker).
    pool.shutdown(wait=True, cancel_futures=True)


class WorkerStopped(SystemExit):
    """Raised in a pool worker by SIGTERM: from the study process stopping the pool, or from
    the worker itself once its parent is gone. It unwinds the run, then the worker exits."""


def _worker_init() -> None:
    """The first thing every pool worker runs. Ctrl-C is the parent's to handle (it stops
    the workers itself); SIGTERM unwinds the run; a thread ends the worker with its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stopped)
    # tqdm's default lock is a multiprocessing semaphore, which a stopped worker (it ends
    # with os._exit) would leave to the resource tracker, with a "leaked semaphore" warning.
    # Workers draw no bars: a thread lock does.
    tqdm_std.tqdm.set_lock(threading.RLock())
    threading.Thread(target=_exit_with_parent, name="cnnbench-parent-watch", daemon=True).start()


def _raise_stopped(signum: int, _frame: object) -> None:
    raise WorkerStopped(128 + signum)


def _exit_with_parent(grace_s: float = STOP_GRACE_S) -> None:
    """Wait for the parent to die (its sentinel pipe closes, however it died), then stop
    this worker: SIGTERM to itself so the run unwinds, and a hard exit after ``grace_s``."""
    # A process-directed SIGTERM (the pool's terminate()) goes to any thread that does not
    # block it; taken by this one, it would leave a main thread that sits in a blocking call
    # un-interrupted until the hard kill, its run never unwound. Only the main thread takes it.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    parent.join()  # returns once the parent process has exited
    if hasattr(signal, "pthread_kill"):  # to the main thread, so a blocking call returns
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
    else:
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(1)


def _pool_job(
    job: Callable[[dict[str, Any], str, str, bool], str],
    config_json: dict[str, Any],
    parent: str,
    command: str,
) -> str:
    """``job`` in a pool worker, without progress bars. A stopped worker exits once its run
    has unwound instead of returning to the pool, which would hand it the next queued run."""
    try:
        return job(config_json, parent, command, False)
    except WorkerStopped as e:
        os._exit(e.code if isinstance(e.code, int) else 1)
