"""Where a study's runs train: in this process, in a pool of processes, or as Ray tasks.

Every executor has the same face: ``run(wave)`` trains a list of runs and yields one
``(run name, error or None)`` per run as it ends, in the order they end. The study runner
records each outcome in one place (``StudyResult.record``), whatever trained it. Every
executor trains through ``train_one``, which trains, resumes or skips one run, so a run
directory looks the same whichever executor wrote it.
"""

from __future__ import annotations

from collections.abc import Generator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from cnnbench.train.config import RunConfig

# How one run ended: its name, and the exception it failed with (None: it trained).
Outcome = tuple[str, BaseException | None]
# What ``run`` returns; a generator, so that a caller that stops early can close it (which
# stops the runs still going).
Outcomes = Generator[Outcome, None, None]


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
    """``workers`` spawned processes, each run limited to ``threads`` CPU threads."""

    directory: Path
    command: str
    workers: int
    threads: int
    one_at_a_time = False

    def run(self, wave: list[RunConfig]) -> Outcomes:
        # spawn: a fresh interpreter per worker, no forked torch thread pools or CUDA state.
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"))
        try:
            pending = {}
            for config in wave:
                cfg = worker_config(config, self.threads)
                fut = pool.submit(train_one, cfg, str(self.directory), self.command, False)
                pending[fut] = config.run_name()  # workers show no progress bars
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.exception()
        except BaseException:  # interrupted (or the caller stopped listening): stop now
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
