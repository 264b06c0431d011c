"""The study YAML: a base run config, a grid and/or explicit runs, expanded into RunConfigs.

A study file looks like::

    name: quick               # optional; default: the file's stem
    description: ...          # optional, shown in the report
    base: {dataset: cifar10, epochs: 3, ...}   # RunConfig options shared by every run
    grid:                     # cartesian product of these RunConfig options
      optimizer: [sgd, adam]
      seed: [0, 1, 2]
    runs:                     # optional explicit runs, each merged over base, then crossed
      - {model: resnet34, optimizer: sgd, lr: 0.1}   # with the grid (non-cartesian tables)
    robustness: true          # optional: measure every finished run on the corruption
                              # protocol (cnnbench robustness); or {images: 2000, seed: 0},
                              # or {full: true} for the whole test split

Every expanded run is validated as a RunConfig before anything trains; any problem (unknown
key, bad value, empty grid, two identical runs) is one ConfigError line naming where it is.

Run names come from what the file wrote, not from the resolved configs: a setting is "varied"
when the study's runs write it differently (and it resolves differently), and a run that uses
a recipe names only the varied settings it wrote itself; ``recipe<name>`` stands for what the
recipe filled in. So ``{recipe: fast, budget_minutes: 1.25, model: fastnet_small}`` beside
runs with ``epochs`` and ``train_subset`` is ``fastnet_small-sgd-lr0.75-budgetminutes1.25-
recipefast-s0``, not a list of twenty recipe values.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnbench.robustness.protocol import DEFAULT_IMAGES, DEFAULT_SEED
from cnnbench.train.config import (
    ConfigError,
    RunConfig,
    execution_only_fields,
    load_config,
    read_yaml,
)

STUDY_KEYS = ("name", "description", "base", "grid", "runs", "robustness")

# Order and short form of the settings that make up a run's name. ``model``, ``optimizer``,
# ``lr`` and ``seed`` always appear; the others only when they vary within the study.
_ALWAYS = ("model", "optimizer", "lr", "seed")
_PREFIX = {
    "lr": "lr",
    "seed": "s",
    "epochs": "e",
    "batch_size": "b",
    "train_subset": "n",
    "weight_decay": "wd",
    "label_smoothing": "ls",
    "momentum": "m",
    "warmup_epochs": "wu",
    "val_size": "val",
    "test_subset": "test",
}
# Settings that never change a number a run produces: not part of names or comparisons.
EXECUTION_KEYS = execution_only_fields()
_SAFE = re.compile(r"[^A-Za-z0-9._]+")


@dataclass(frozen=True)
class RobustnessSpec:
    """The study's ``robustness:`` option: measure each finished run on the corruption
    protocol (``cnnbench.robustness.measure_run``) with ``images`` test images (None: all of
    them) and ``seed``."""

    images: int | None = DEFAULT_IMAGES
    seed: int = DEFAULT_SEED

    def measure_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``measure_run`` and ``is_measured``."""
        return {"images": self.images, "seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "full": self.images is None, "seed": self.seed}


_ROBUSTNESS_KEYS = ("images", "full", "seed")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_robustness(value: Any) -> RobustnessSpec | None:
    """``robustness:`` of a study: absent / false (None), true (the default protocol), or a
    mapping of ``images`` (>= 1), ``full`` (true: every test image) and ``seed`` (>= 0)."""
    if value is None or value is False:
        return None
    if value is True:
        return RobustnessSpec()
    if not isinstance(value, dict):
        raise ConfigError(
            f"robustness: expected true, false or a mapping of {', '.join(_ROBUSTNESS_KEYS)}, "
            f"got {value!r}"
        )
    unknown = [k for k in value if k not in _ROBUSTNESS_KEYS]
    if unknown:
        raise ConfigError(f"robustness: unknown option {unknown[0]!r}; expected: "
                          f"{', '.join(_ROBUSTNESS_KEYS)}")  # fmt: skip
    full = value.get("full", False)
    if not isinstance(full, bool):
        raise ConfigError(f"robustness.full: expected true or false, got {full!r}")
    images = value.get("images", None if full else DEFAULT_IMAGES)
    if full and "images" in value and images is not None:
        raise ConfigError("robustness: give images or full: true, not both")
    if not full and (not _is_int(images) or images < 1):
        raise ConfigError(f"robustness.images: expected a whole number >= 1, got {images!r}")
    seed = value.get("seed", DEFAULT_SEED)
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"robustness.seed: expected a whole number >= 0, got {seed!r}")
    return RobustnessSpec(images=None if full else images, seed=seed)


@dataclass
class Study:
    """An expanded study: its name, where it came from, and one RunConfig per run.
    ``robustness``: measure each finished run on the corruption protocol, or None."""

    name: str
    runs: list[RunConfig]
    source: str | None = None
    description: str = ""
    varied: list[str] = field(default_factory=list)  # settings that differ between runs
    robustness: RobustnessSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``study.yaml`` in the study's folder holds: every resolved run config."""
        out = {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "varied": self.varied,
            "runs": [c.model_dump(mode="json") for c in self.runs],
        }
        if self.robustness is not None:
            out["robustness"] = self.robustness.to_dict()
        return out


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "-".join(f"{k}{_fmt_value(v)}" for k, v in sorted(value.items())) or "none"
    if value is None:
        return "none"
    return str(value)


def _name_part(key: str, value: Any) -> str:
    if key in ("model", "optimizer", "schedule"):
        part = str(value)
    elif key == "dataset":
        part = str(value).split(":", 1)[0]
    elif key == "model_args":
        part = _fmt_value(value)
    elif isinstance(value, bool):
        part = key.replace("_", "") if value else "no" + key.replace("_", "")
    elif key in _PREFIX:
        part = _PREFIX[key] + _fmt_value(value)
    elif key == "transfer" and isinstance(value, dict):
        part = f"{value.get('policy', 'transfer')}"
    else:
        part = key.replace("_", "") + _fmt_value(value)
    return _SAFE.sub("_", part).strip("_")


def run_name(
    config: dict[str, Any], varied: list[str], written: Collection[str] | None = None
) -> str:
    """``model-[dataset-]optimizer-lrX-[other varied settings-]sY``, deterministic.

    ``config`` is the resolved run; ``written``, when given, the settings the study file set
    for it. A run with a recipe then names only the varied settings it wrote (the recipe's
    own values are summed up by ``recipe<name>``); a run without one names every varied
    setting, as always. ``model``, ``optimizer``, ``lr`` and ``seed`` always appear.
    """
    keys = ["model"]
    if "dataset" in varied:
        keys.append("dataset")
    keys += ["optimizer", "lr"]
    others = sorted(k for k in varied if k not in keys and k not in (*_ALWAYS, "dataset"))
    if written is not None and config.get("recipe"):
        others = [k for k in others if k in written]
    keys += [*others, "seed"]
    return "-".join(_name_part(k, config.get(k)) for k in keys)


def _as_mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of run options, got {type(value).__name__}")
    return value


def _check_keys(keys: Any, where: str) -> None:
    unknown = [k for k in keys if k not in RunConfig.model_fields]
    if unknown:
        raise ConfigError(
            f"{where}: unknown run option {unknown[0]!r} "
            "(see `cnnbench train --help` for the options)"
        )


def _grid_combos(grid: dict[str, Any]) -> list[dict[str, Any]]:
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(f"grid.{key}: expected a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"grid.{key}: empty list, the grid would have no runs")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def parse_study(data: Any, *, default_name: str = "study", source: str | None = None) -> Study:
    """Expand and validate a study given as a dict (the parsed YAML). Raises ConfigError."""
    name = _check_study_keys(data, default_name)
    robustness = parse_robustness(data.get("robustness"))
    base = _as_mapping(data.get("base"), "base")
    grid = _as_mapping(data.get("grid"), "grid")
    explicit = data.get("runs")
    _check_keys(base, "base")
    _check_keys(grid, "grid")
    if explicit is not None and not isinstance(explicit, list):
        raise ConfigError(f"runs: expected a list of run option mappings, got {explicit!r}")
    if explicit == [] or (explicit is None and not grid):
        raise ConfigError("the study has no runs: give a non-empty grid: and/or runs: list")
    raw = _expand(base, grid, explicit if explicit is not None else [{}])
    resolved = _resolve(raw, by_entry=explicit is not None)
    written = [cfg for _, cfg in raw]
    # Varied: written differently by the file AND resolving differently (a recipe's values
    # differ between models, but the file did not choose them; `lr: 0.1` vs `lr: 1.0e-1`
    # is no difference). Without recipes this is exactly "resolves differently".
    varied = sorted(
        k
        for k in RunConfig.model_fields
        if k not in EXECUTION_KEYS
        and len({(k in w, _canonical(w.get(k))) for w in written}) > 1
        and len({_canonical(r[k]) for r in resolved}) > 1
    )
    return Study(
        name=name,
        runs=_named_runs(resolved, written, varied),
        source=source,
        description=str(data.get("description") or "").strip(),
        varied=varied,
        robustness=robustness,
    )


def _check_study_keys(data: Any, default_name: str) -> str:
    """The study's name, once its top-level keys are known ones."""
    if not isinstance(data, dict):
        raise ConfigError(f"a study is a mapping with keys {', '.join(STUDY_KEYS)}")
    unknown = [k for k in data if k not in STUDY_KEYS]
    if unknown:
        raise ConfigError(
            f"unknown study key {unknown[0]!r}; expected: {', '.join(STUDY_KEYS)} "
            "(run options go under base:, grid: or runs:)"
        )
    name = str(data.get("name") or default_name)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"name: {name!r} must use only letters, digits, '.', '_' and '-'")
    return name


def _expand(
    base: dict[str, Any], grid: dict[str, Any], entries: list[Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(where, options) of every run: each entry merged over base, crossed with the grid."""
    combos = _grid_combos(grid)
    raw: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        where = f"runs[{i}]"
        entry = _as_mapping(entry, where)
        _check_keys(entry, where)
        clash = sorted(set(entry) & set(grid))
        if clash:
            raise ConfigError(f"{where}: {clash[0]!r} is set both here and in grid:")
        for combo in combos:
            raw.append((where, {**base, **entry, **combo}))
    return raw


def _resolve(raw: list[tuple[str, dict[str, Any]]], *, by_entry: bool) -> list[dict[str, Any]]:
    """Every run validated before naming: a bad value fails with where it came from."""
    resolved = []
    for where, cfg in raw:
        try:
            resolved.append(load_config(cfg).model_dump(mode="json"))
        except ConfigError as e:
            raise ConfigError(f"{where if by_entry else 'grid'}: {e}") from None
    return resolved


def _canonical(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=True)


def _same_run_error(first: int, second: int, name: str) -> ConfigError:
    return ConfigError(
        f"runs {first + 1} and {second + 1} of the study are the same run ({name}); "
        "remove the duplicate or give one a different setting"
    )


def _named_runs(
    resolved: list[dict[str, Any]], written: list[dict[str, Any]], varied: list[str]
) -> list[RunConfig]:
    """The runs with their names (given, or made from the varied settings); no two alike,
    by name or (for unnamed runs) by resolved settings."""
    runs: list[RunConfig] = []
    seen: dict[str, int] = {}
    same: dict[str, int] = {}  # resolved settings of unnamed runs -> index
    for i, (cfg, wrote) in enumerate(zip(resolved, written, strict=True)):
        name_i = cfg.get("name") or run_name(cfg, varied, wrote)
        if name_i in seen:
            raise _same_run_error(seen[name_i], i, name_i)
        seen[name_i] = i
        if not cfg.get("name"):
            # Two unnamed runs can only resolve alike under different names when a recipe
            # filled in what the other wrote: still the same run.
            key = _canonical({k: v for k, v in cfg.items() if k not in EXECUTION_KEYS})
            if key in same:
                raise _same_run_error(same[key], i, name_i)
            same[key] = i
        runs.append(load_config({**cfg, "name": name_i}))
    return runs


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """Read, expand and validate a study YAML file. ``overrides`` apply to every run, last.

    Raises ConfigError (one line) on a missing file, bad YAML or any invalid run.
    """
    path = Path(path)
    data = read_yaml(path, "study file")
    if overrides:
        if not isinstance(data, dict):
            data = {}
        _check_keys(overrides, "--set")
        # Overrides win over base, explicit runs and grid alike; a grid axis they set keeps
        # one value, so the grid's shape (and "no runs" detection) stays as written.
        data = dict(data)
        grid = _as_mapping(data.get("grid"), "grid")
        data["grid"] = {k: [overrides[k]] if k in overrides else v for k, v in grid.items()}
        if isinstance(data.get("runs"), list):
            data["runs"] = [
                {k: v for k, v in _as_mapping(r, "runs").items() if k not in overrides}
                for r in data["runs"]
            ]
        data["base"] = {**_as_mapping(data.get("base"), "base"), **overrides}
    try:
        return parse_study(data, default_name=path.stem, source=str(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
