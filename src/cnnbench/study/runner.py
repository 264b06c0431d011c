"""Run every run of a study, resumably, then hand over to the report.

The study's folder is ``<runs_dir>/<study name>/``: ``study.yaml`` (every resolved run config),
one run directory per run (the trainer's format), and ``report/``. A run whose summary says
``complete`` is skipped; any other existing run directory is resumed from its last checkpoint;
so a study killed at any moment continues where it stopped, never training a finished run
twice. Where runs train is an executor's concern (``cnnbench.study.executors``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from cnnbench.fileio import write_text_atomic
from cnnbench.rundir import RunDir, is_complete
from cnnbench.study.executors import Executor, Inline, ProcessPool
from cnnbench.study.spec import Study
from cnnbench.train.config import ConfigError, RunConfig

STUDY_FILE = "study.yaml"
# What the study measures of every finished run (``measure_run(quick=True, **STUDY_BENCH)``):
# batch-1 latency on ONNX Runtime fp32 and int8, one thread, the two CPU back-ends a model is
# shipped on; each in a fresh process for up to ~2 s after warm-up (the quick settings), so a
# run costs a few seconds per backend plus the export and the int8 calibration.
STUDY_BENCH: dict[str, Any] = {
    "backends": ("onnxruntime", "onnxruntime-int8"),
    "threads": [1],
}


@dataclass
class StudyResult:
    """What a study run did: runs trained now, skipped as complete, failed (name -> error)."""

    study_dir: Path
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    benched: list[str] = field(default_factory=list)
    bench: bool = True  # measure latency after training (when cnnbench.bench exists)

    def record(self, name: str, err: BaseException | None, say: Callable[[str], None]) -> None:
        """Note how one run ended (every executor's outcomes come through here)."""
        if err is None:
            self.trained.append(name)
        else:
            self.failed[name] = f"{err.__class__.__name__}: {err}"
            say(f"run {name} failed: {self.failed[name]}")


def study_dir(study: Study, runs_dir: str | Path) -> Path:
    """Where a study's runs and report live: ``<runs_dir>/<study name>``."""
    return Path(runs_dir) / study.name


def write_study_file(study: Study, directory: Path, command: str | None) -> Path:
    """Write the expanded study (every resolved run config) so the report can reproduce it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STUDY_FILE
    data = {**study.to_dict(), "command": command}
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
    return path


def _bench_hook() -> Callable[..., Any] | None:
    """``cnnbench.bench.measure_run`` when that module exists (it is optional)."""
    try:
        from cnnbench.bench import measure_run
    except (ImportError, AttributeError):
        return None
    return measure_run


def has_study_latency(bench: dict[str, Any] | None) -> bool:
    """True when ``bench`` (a run's bench.json) already holds every backend of
    ``STUDY_BENCH`` at batch 1, one CPU thread: measured, or tried and failed."""
    if not bench:
        return False
    rows = [*(bench.get("results") or []), *(bench.get("errors") or [])]
    have = {
        r.get("backend")
        for r in rows
        if isinstance(r, dict)
        and r.get("device", "cpu") == "cpu"
        and r.get("threads") == 1
        and r.get("batch", 1) == 1
    }
    return set(STUDY_BENCH["backends"]) <= have


def _measure(run_dir: Path, result: StudyResult, log: Callable[[str], None]) -> None:
    measure = _bench_hook() if result.bench else None
    if measure is None or has_study_latency(RunDir(run_dir).bench()):
        return
    try:
        measure(run_dir, quick=True, **STUDY_BENCH)
        result.benched.append(run_dir.name)
    except Exception as e:  # a failed benchmark must not lose the trained run
        log(f"latency of {run_dir.name} not measured: {e.__class__.__name__}: {e}")


def run_study(
    study: Study,
    *,
    runs_dir: str | Path = "runs",
    workers: int = 1,
    progress: bool = True,
    command: str | None = None,
    bench: bool = True,
    log: Callable[[str], None] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    gpus_per_run: float = 0.0,
) -> StudyResult:
    """Train every run not yet complete; returns what happened. Never raises for one run's
    failure (it is recorded in ``failed``); KeyboardInterrupt stops everything.

    With ``workers > 1`` runs train in that many spawned processes, each limited to
    ``cores // workers`` threads unless the run sets ``threads`` itself. With ``bench`` and
    ``cnnbench.bench`` importable, each finished run's batch-1 CPU latency is measured with
    ONNX Runtime fp32 and int8 on one thread (``measure_run(run_dir, quick=True,
    **STUDY_BENCH)`` writes the run's benchmark file) unless its benchmark file has them
    already. ``executor="ray"`` trains the runs as Ray tasks (``cnnbench.study.ray_backend``), locally or on the cluster
    at ``ray_address``. Transfer children whose parent is a run of the same study start only
    once their parent's wave has finished.
    """

    def say(msg: str) -> None:
        (log or (lambda m: tqdm.write(m, file=sys.stderr)))(msg)

    directory = study_dir(study, runs_dir)
    write_study_file(study, directory, command)
    result = StudyResult(study_dir=directory, bench=bench)
    todo = _not_complete(study, directory, result, say)
    file_cmd = command or (f"cnnbench study {study.source}" if study.source else "cnnbench study")
    runner = _executor(executor, workers, directory, file_cmd, progress, ray_address, gpus_per_run)
    with tqdm(
        total=len(study.runs),
        initial=len(result.skipped),
        desc=f"study {study.name}",
        unit="run",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        _train(runner, todo, directory, result, bar, say)
        # Runs finished earlier may lack these measurements (older studies): measure them.
        for name in result.skipped:
            _measure(directory / name, result, say)
    return result


def _not_complete(
    study: Study, directory: Path, result: StudyResult, say: Callable[[str], None]
) -> list[RunConfig]:
    """The runs left to train; the complete ones are noted as skipped."""
    todo: list[RunConfig] = []
    for config in study.runs:
        if is_complete(directory / config.run_name()):
            result.skipped.append(config.run_name())
        else:
            todo.append(config)
    if result.skipped:
        say(f"{study.name}: {len(result.skipped)} of {len(study.runs)} runs already complete")
    return todo


def _executor(
    kind: str,
    workers: int,
    directory: Path,
    command: str,
    progress: bool,
    ray_address: str | None,
    gpus_per_run: float,
) -> Executor:
    """In this process, ``workers`` processes, or Ray tasks (each with cores // workers CPUs)."""
    if kind == "local" and workers <= 1:
        return Inline(directory, command, progress)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    if kind == "ray":
        from cnnbench.study.ray_backend import RayTasks

        return RayTasks(directory, command, ray_address, threads, gpus_per_run)
    return ProcessPool(directory, command, workers, threads)


def _train(
    runner: Executor,
    todo: list[RunConfig],
    directory: Path,
    result: StudyResult,
    bar: tqdm,
    say: Callable[[str], None],
) -> None:
    """Train ``todo`` wave by wave, recording each outcome, and measure each trained run's
    latency: as it ends when runs train one at a time, else after all of them, one at a time
    (timing while other runs train would measure the contention, not the model)."""
    # In this process runs train in the study's order; elsewhere a transfer child waits for
    # its parent's wave.
    waves = [todo] if runner.one_at_a_time else _waves(todo, directory)
    for wave in waves:
        with closing(runner.run(wave)) as outcomes:
            for name, err in outcomes:
                result.record(name, err, say)
                if err is None and runner.one_at_a_time:
                    _measure(directory / name, result, say)
                bar.update(1)
    if not runner.one_at_a_time:
        for name in result.trained:
            _measure(directory / name, result, say)


def _waves(todo: list[RunConfig], directory: Path) -> list[list[RunConfig]]:
    """Split runs into waves so a transfer child starts after its parent (a run of this study)
    has finished: parents first, then their children, and so on."""
    names = {c.run_name(): c for c in todo}
    here = directory.resolve()

    def parent_of(config: RunConfig) -> str | None:
        if config.transfer is None:
            return None
        parent = Path(config.transfer.parent)
        parent = parent.parent if parent.suffix == ".pt" else parent
        if parent.resolve().parent == here and parent.name in names:
            return parent.name
        return None

    depth: dict[str, int] = {}

    def level(name: str, seen: tuple[str, ...] = ()) -> int:
        if name not in depth:
            parent = parent_of(names[name])
            if parent in seen:
                raise ConfigError(f"runs {name} and {parent} are each other's transfer parent")
            depth[name] = 0 if parent is None else level(parent, (*seen, name)) + 1
        return depth[name]

    waves: dict[int, list[RunConfig]] = {}
    for config in todo:
        waves.setdefault(level(config.run_name()), []).append(config)
    return [waves[k] for k in sorted(waves)]
