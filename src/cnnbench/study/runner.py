"""Run every run of a study, resumably, then hand over to the report.

The study's folder is ``<runs_dir>/<study name>/``: ``study.yaml`` (every resolved run config),
one run directory per run (the trainer's format), and ``report/``. A run whose summary says
``complete`` is skipped; any other existing run directory is resumed from its last checkpoint;
so a study killed at any moment continues where it stopped, never training a finished run
twice. Where runs train is an executor's concern (``cnnbench.study.executors``).

While a study runs, SIGTERM in its main process is handled like Ctrl-C (``Terminated``, a
KeyboardInterrupt): queued runs are cancelled, running ones stopped, every run directory's
lock released and temp folders deleted, and the CLI ends with one line. The progress bar
weighs each run by its expected cost (``expected_cost``), so its ETA does not assume that
every run costs what the first one did; without a terminal it prints one line per run.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from cnnbench.env import usable_cpus
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
    robustness: Any = None  # the study's RobustnessSpec: measure corruption accuracy too

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
    _measure_robustness(run_dir, result, log)
    measure = _bench_hook() if result.bench else None
    if measure is None or has_study_latency(RunDir(run_dir).bench()):
        return
    try:
        measure(run_dir, quick=True, **STUDY_BENCH)
        result.benched.append(run_dir.name)
    except Exception as e:  # a failed benchmark must not lose the trained run
        log(f"latency of {run_dir.name} not measured: {e.__class__.__name__}: {e}")


def _measure_robustness(run_dir: Path, result: StudyResult, log: Callable[[str], None]) -> None:
    """The corruption protocol of a finished run, when the study asks for it (once per run)."""
    if result.robustness is None:
        return
    from cnnbench.robustness import is_measured, measure_run

    kwargs = result.robustness.measure_kwargs()
    try:
        if not is_measured(run_dir, **kwargs):
            measure_run(run_dir, **kwargs)
    except Exception as e:  # a failed measurement must not lose the trained run
        log(f"robustness of {run_dir.name} not measured: {e.__class__.__name__}: {e}")


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
    result = StudyResult(study_dir=directory, bench=bench, robustness=study.robustness)
    todo = _not_complete(study, directory, result, say)
    file_cmd = command or (f"cnnbench study {study.source}" if study.source else "cnnbench study")
    runner = _executor(executor, workers, directory, file_cmd, progress, ray_address, gpus_per_run)
    costs = {c.run_name(): expected_cost(c, directory / c.run_name()) for c in study.runs}
    with (
        _sigterm_interrupts(),
        StudyProgress(study.name, costs, result.skipped, progress, say) as bar,
    ):
        _train(runner, todo, directory, result, bar, say)
        # Runs finished earlier may lack these measurements (older studies): measure them.
        for name in result.skipped:
            _measure(directory / name, result, say)
    return result


class Terminated(KeyboardInterrupt):
    """SIGTERM reached a study's main process: it stops like Ctrl-C (a KeyboardInterrupt,
    so the CLI ends with one line and every ``finally`` on the way runs)."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``Terminated`` in the main thread: the pool is
    stopped, locks released and temp folders deleted instead of the process vanishing with
    its workers still training. A handler someone else installed is left alone."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def terminated(signum: int, _frame: object) -> None:
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --- progress -----------------------------------------------------------------------------
# What weighs runs against each other for the ETA (only the ratios between runs matter):
# - training MACs per second of one run: 3 x MACs x images / train_time_s of the finished runs
#   on the team's 2-core CPU ranged from 0.8e10 (mobilenetv2) to 1e11 (fastnet_small);
# - a run's fixed cost: data loading, model set-up and the latency measurement after it.
_MACS_PER_S = 2e10
_RUN_OVERHEAD_S = 10.0
# Split sizes of the CIFAR datasets (ImageFolder sizes are unknown before loading: the same).
_TRAIN_IMAGES, _TEST_IMAGES = 50_000, 10_000


def expected_cost(config: RunConfig, run_dir: Path | None = None) -> float:
    """A run's expected cost, in rough seconds: its budget where it has one, else its
    compute (MACs x (3 x training images + validation images) per epoch, forward and backward
    for training, plus the test pass). Epochs already in ``run_dir`` (a run being resumed)
    are not counted again; a complete run costs nothing more."""
    if run_dir is not None and is_complete(run_dir):
        return 0.0
    left = _fraction_left(config, run_dir)
    macs = _macs(config.model, json.dumps(config.model_args, sort_keys=True), config.image_size)
    val = config.val_size
    train_images = config.train_subset or max(1, _TRAIN_IMAGES - val)
    test_s = macs * (config.test_subset or _TEST_IMAGES) / _MACS_PER_S
    if config.budget_minutes is not None:
        fit_s = config.budget_minutes * 60.0
    else:
        fit_s = macs * (3 * train_images + val) * config.epochs / _MACS_PER_S
    return _RUN_OVERHEAD_S + left * fit_s + test_s


def _fraction_left(config: RunConfig, run_dir: Path | None) -> float:
    """The share of a run's epochs not yet trained (1.0 for a new run)."""
    if run_dir is None:
        return 1.0
    run = RunDir(run_dir)
    done = len(run.metrics())
    epochs = (run.config() or {}).get("epochs", config.epochs)  # a budget run's resolved epochs
    if not done or not isinstance(epochs, int) or epochs < 1:
        return 1.0
    return max(0.0, 1.0 - done / epochs)


@functools.lru_cache(maxsize=64)
def _macs(model: str, model_args: str, image_size: int) -> float:
    """MACs of one forward pass of a model (its builder's default head); a model that cannot
    be built here weighs as much as LeNet-5 (its run fails on its own, with its own error)."""
    try:
        from cnnbench.models import create_model
        from cnnbench.profile import count_macs

        net = create_model(model, **json.loads(model_args))
        return float(count_macs(net, (3, image_size, image_size)))
    except Exception:
        return 6.5e5


class StudyProgress:
    """The study's progress over its runs, weighted by ``costs`` (run name -> expected cost):
    a tqdm bar on a terminal (percentage and ETA by cost, runs counted beside it), otherwise
    one plain line per finished run (no carriage-return redraws in a log file)."""

    def __init__(
        self,
        name: str,
        costs: dict[str, float],
        skipped: list[str],
        enabled: bool,
        say: Callable[[str], None],
        terminal: bool | None = None,
    ) -> None:
        self.name, self.costs, self.say = name, costs, say
        self.runs, self.done = len(costs), len(skipped)
        self.total = sum(costs.values())
        self.start_cost = self.cost = sum(costs.get(n, 0.0) for n in skipped)
        self.started = time.monotonic()
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.lines = enabled and not terminal
        self.bar = tqdm(
            total=self.total,
            initial=self.start_cost,
            desc=f"study {name}",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]",
            postfix=self._runs(),
            smoothing=0,  # the mean rate over the study: one cheap run says little
            disable=not enabled or not terminal,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def _runs(self) -> str:
        return f"{self.done}/{self.runs} runs"

    def finished(self, name: str) -> None:
        """One run ended (trained or failed)."""
        cost = self.costs.get(name, 0.0)
        self.done, self.cost = self.done + 1, self.cost + cost
        self.bar.set_postfix_str(self._runs(), refresh=False)
        self.bar.update(cost)
        if self.lines:
            self.say(f"study {self.name}: {name} done, {self._runs()}, {self._eta()}")

    def _eta(self) -> str:
        """'N% of the work, about M:SS left' from the mean rate of this session's runs."""
        share = self.cost / self.total if self.total else 1.0
        done_now = self.cost - self.start_cost
        if done_now <= 0 or self.cost >= self.total:
            return f"{share:.0%} of the work"
        left = (time.monotonic() - self.started) * (self.total - self.cost) / done_now
        return f"{share:.0%} of the work, about {tqdm.format_interval(left)} left"

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> StudyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    threads = max(1, usable_cpus() // max(1, workers))
    if kind == "ray":
        from cnnbench.study.ray_backend import RayTasks

        return RayTasks(directory, command, ray_address, threads, gpus_per_run)
    return ProcessPool(directory, command, workers, threads)


def _train(
    runner: Executor,
    todo: list[RunConfig],
    directory: Path,
    result: StudyResult,
    bar: StudyProgress,
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
                bar.finished(name)
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
