"""Run a study's runs as Ray tasks: the same run directories, on a laptop or a cluster.

``cnnbench study studies/paper.yaml --executor ray [--ray-address auto]`` submits one Ray task
per run that is not complete yet; each task calls the ordinary trainer with ``resume=True``,
so a run directory written by a Ray worker is the same as one written locally, a killed study
continues where it stopped, and ``cnnbench report`` reads it unchanged. Ray is an optional
extra (``pip install 'cnnbench[ray]'``); without it the local executors keep working.

On a cluster, ``--runs-dir`` must be a filesystem every node sees (NFS, a mounted bucket):
workers write their runs there and the driver reads their summaries back from it. Each task
asks Ray for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs, which is how Ray packs runs onto
machines; the trainer then uses CUDA if Ray gave the task a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.study.executors import Outcomes, train_one, worker_config
from cnnbench.train.config import ConfigError, RunConfig


def run_with_ray(
    todo: list[RunConfig],
    directory: Path,
    command: str,
    *,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
) -> Outcomes:
    """Train ``todo`` as Ray tasks; the iterator yields ``(name, error or None)`` as each one
    ends. Raises ConfigError at once when Ray is not installed."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            "--executor ray needs Ray: pip install 'cnnbench[ray]' (or use --workers N)"
        ) from e
    return _outcomes(ray, todo, directory, command, address, cpus_per_run, gpus_per_run)


def _outcomes(
    ray: Any,
    todo: list[RunConfig],
    directory: Path,
    command: str,
    address: str | None,
    cpus_per_run: float,
    gpus_per_run: float,
) -> Outcomes:
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, configure_logging=False
        )
    try:
        # The same entry point as the local executors: train, resume, or skip one run.
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(train_one)
        parent = str(directory.resolve())
        threads = max(1, int(cpus_per_run))
        pending = {
            remote.remote(worker_config(c, threads), parent, command, False): c.run_name()
            for c in todo
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                name = pending.pop(ref)
                try:
                    ray.get(ref)
                except Exception as e:  # a RayTaskError wraps the run's own error
                    yield name, getattr(e, "cause", None) or e
                else:
                    yield name, None
    finally:
        if started_here:
            ray.shutdown()


@dataclass
class RayTasks:
    """One Ray task per run, each asking Ray for ``cpus_per_run`` CPUs and ``gpus_per_run``
    GPUs, on this machine or the cluster at ``address``."""

    directory: Path
    command: str
    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    one_at_a_time = False

    def run(self, wave: list[RunConfig]) -> Outcomes:
        return run_with_ray(
            wave,
            self.directory,
            self.command,
            address=self.address,
            cpus_per_run=self.cpus_per_run,
            gpus_per_run=self.gpus_per_run,
        )
