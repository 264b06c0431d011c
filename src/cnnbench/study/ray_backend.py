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

from collections.abc import Callable
from pathlib import Path

from cnnbench.study.runner import _train_one
from cnnbench.train.config import ConfigError, RunConfig


def run_with_ray(
    todo: list[RunConfig],
    directory: Path,
    command: str,
    *,
    on_done: Callable[[str, BaseException | None], None],
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
) -> None:
    """Train ``todo`` as Ray tasks; ``on_done(name, error)`` is called as each one ends."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            "--executor ray needs Ray: pip install 'cnnbench[ray]' (or use --workers N)"
        ) from e

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
    try:
        # The same entry point as the local process pool: train, resume, or skip one run.
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(_train_one)
        pending = {}
        for config in todo:
            cfg = config.model_dump(mode="json")
            if cfg.get("threads") is None:
                cfg["threads"] = max(1, int(cpus_per_run))
            ref = remote.remote(cfg, str(directory.resolve()), command, False)
            pending[ref] = config.run_name()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                name = pending.pop(ref)
                try:
                    ray.get(ref)
                    on_done(name, None)
                except Exception as e:  # a RayTaskError wraps the run's own error
                    on_done(name, getattr(e, "cause", None) or e)
    finally:
        if started_here:
            ray.shutdown()
