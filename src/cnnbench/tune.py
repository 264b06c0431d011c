"""Hyper-parameter search with Optuna: TPE sampling, median pruning on validation accuracy.

A search file looks like::

    name: tune-quick                  # optional; default: the file's stem
    base: {model: lenet5, epochs: 4}  # RunConfig options shared by every trial
    search:                           # what the sampler chooses, per trial
      lr: {low: 1.0e-4, high: 0.3, log: true}        # float range
      optimizer: [sgd, adam, adadelta]               # categorical
      batch_size: {low: 32, high: 256, step: 32}     # int range (ints in low/high/step)
    trials: 12                        # COMPLETE + PRUNED trials to reach, over all workers
    storage: null                     # default sqlite:///<runs-dir>/<name>/optuna.db
    seed: 0                           # sampler seed
    startup_trials: 4                 # trials before TPE and pruning start

Each trial is an ordinary run in ``<runs-dir>/<name>/trial-NNNN/`` (config, metrics,
checkpoints, summary), so ``cnnbench report <runs-dir>/<name>`` shows a search like a study.
The objective is the best *validation* accuracy: the test set plays no part in choosing.
Several workers may run ``cnnbench tune`` on the same file and storage at once (e.g. a
PostgreSQL URL, one worker per GPU or machine); each asks the storage for the next trial and
all stop when ``trials`` finished trials exist. Re-running a killed search continues it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnbench.fileio import write_text_atomic
from cnnbench.train.config import ConfigError, RunConfig, load_config, read_yaml

TUNE_KEYS = (
    "name",
    "description",
    "base",
    "search",
    "trials",
    "storage",
    "seed",
    "startup_trials",
    "direction",
)


@dataclass
class SearchSpec:
    """A validated search: base options, the search space, and how many trials."""

    name: str
    base: dict[str, Any]
    space: dict[str, Any]
    trials: int
    storage: str | None = None
    seed: int = 0
    startup_trials: int = 4
    description: str = ""
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _check_space(space: dict[str, Any]) -> None:
    for key, dist in space.items():
        where = f"search.{key}"
        if key not in RunConfig.model_fields:
            raise ConfigError(f"{where}: unknown run option {key!r}")
        if isinstance(dist, list):
            if not dist:
                raise ConfigError(f"{where}: empty list of choices")
            continue
        if not isinstance(dist, dict) or not {"low", "high"} <= set(dist):
            raise ConfigError(
                f"{where}: expected a list of choices or {{low:, high:}}, got {dist!r}"
            )
        unknown = set(dist) - {"low", "high", "log", "step"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (low, high, log, step)")
        if not dist["low"] < dist["high"]:
            raise ConfigError(f"{where}: low must be below high")
        if dist.get("log") and dist["low"] <= 0:
            raise ConfigError(f"{where}: a log range needs low > 0")


def load_search(path: str | Path) -> SearchSpec:
    """Read and validate a search file (every corner of the space must be a valid run)."""
    path = Path(path)
    data = read_yaml(path, "search file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a search is a mapping with keys {', '.join(TUNE_KEYS)}")
    unknown = [k for k in data if k not in TUNE_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected: {', '.join(TUNE_KEYS)}")
    space = data.get("search") or {}
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{path}: search: must map run options to choices or ranges")
    _check_space(space)
    base = data.get("base") or {}
    trials = data.get("trials", 10)
    if not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"{path}: trials must be a positive integer, got {trials!r}")
    name = str(data.get("name") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"{path}: name {name!r} must use only letters, digits, '.', '_', '-'")
    # Validate the corners of the space now, not in trial 7 an hour from now.
    for key, dist in space.items():
        values = dist if isinstance(dist, list) else [dist["low"], dist["high"]]
        for v in values:
            try:
                load_config({**base, key: v, "name": "x"})
            except ConfigError as e:
                raise ConfigError(f"{path}: search.{key}={v!r}: {e}") from None
    return SearchSpec(
        name=name,
        base=dict(base),
        space=space,
        trials=trials,
        storage=data.get("storage"),
        seed=int(data.get("seed", 0)),
        startup_trials=int(data.get("startup_trials", 4)),
        description=str(data.get("description") or ""),
        source=str(path),
    )


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Draw one point of the space from an Optuna trial."""
    params: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, list):
            params[key] = trial.suggest_categorical(key, dist)
        elif all(isinstance(dist[k], int) for k in ("low", "high")) and not isinstance(
            dist.get("step", 1), float
        ):
            params[key] = trial.suggest_int(
                key, dist["low"], dist["high"], step=dist.get("step", 1), log=dist.get("log", False)
            )
        else:
            params[key] = trial.suggest_float(
                key,
                float(dist["low"]),
                float(dist["high"]),
                log=dist.get("log", False),
                step=dist.get("step"),
            )
    return params


def run_search(
    spec: SearchSpec,
    *,
    runs_dir: str | Path = "runs",
    storage: str | None = None,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run trials until ``spec.trials`` finished trials exist in the storage; return the best."""
    try:
        import optuna
    except ImportError as e:  # optional extra
        raise ConfigError("cnnbench tune needs Optuna: pip install 'cnnbench[tune]'") from e

    search_dir = Path(runs_dir) / spec.name
    search_dir.mkdir(parents=True, exist_ok=True)
    url = storage or spec.storage or f"sqlite:///{(search_dir / 'optuna.db').resolve()}"
    study = _open_study(optuna, spec, url)
    _write_yaml(
        search_dir / "search.yaml",
        {
            "name": spec.name,
            "source": spec.source,
            "base": spec.base,
            "search": spec.space,
            "trials": spec.trials,
            "storage": url if url.startswith("sqlite") else "(external)",
        },
    )
    objective = _objective(optuna, spec, search_dir, progress, overrides or {})
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done < spec.trials:
        if not progress:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(
            objective,
            n_trials=spec.trials - done,
            callbacks=[optuna.study.MaxTrialsCallback(spec.trials, states=finished)],
            catch=(),
            show_progress_bar=False,
        )
    result = _result(optuna, study, spec.name, url)
    _write_yaml(search_dir / "search_result.yaml", result)
    return result


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def _open_study(optuna: Any, spec: SearchSpec, url: str) -> Any:
    """The Optuna study in ``url`` (created on first use): TPE sampling, median pruning."""
    # Heartbeats mark the trials of a killed worker as failed, so a restart does not wait.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    return optuna.create_study(
        study_name=spec.name,
        storage=rdb,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=spec.startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=1),
    )


def _objective(
    optuna: Any, spec: SearchSpec, search_dir: Path, progress: bool, overrides: dict[str, Any]
) -> Callable[[Any], float]:
    """One trial: an ordinary run ``trial-NNNN``, reported (and pruned) epoch by epoch;
    its value is the best validation accuracy."""
    from cnnbench.train import train

    def objective(trial: Any) -> float:
        params = suggest(trial, spec.space)
        config = load_config(
            {**spec.base, **params, **overrides, "name": f"trial-{trial.number:04d}"}
        )

        def report(row: dict[str, Any]) -> None:
            trial.report(row["val_acc"], step=row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {row['epoch']}: val_acc {row['val_acc']:.4f}")

        summary = train(
            config, runs_dir=search_dir, resume=True, progress=progress, on_epoch_end=report
        )
        trial.set_user_attr("run", config.run_name())
        trial.set_user_attr("test_acc", summary["test_acc"])
        best = summary["best_val_acc"]
        return float(best if best is not None else summary["final_val_acc"])

    return objective


def _result(optuna: Any, study: Any, name: str, url: str) -> dict[str, Any]:
    """What ``search_result.yaml`` holds: trial counts by state and the best trial."""
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == states.COMPLETE]
    if not complete:
        raise ConfigError(f"search {name}: no trial completed")
    best = study.best_trial
    return {
        "name": name,
        "storage": url,
        "trials": len(trials),
        "complete": len(complete),
        "pruned": sum(t.state == states.PRUNED for t in trials),
        "failed": sum(t.state == states.FAIL for t in trials),
        "best": {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run": best.user_attrs.get("run"),
            "test_acc": best.user_attrs.get("test_acc"),
        },
    }
