"""Named training recipes: YAML files of RunConfig values that a user picks with one option.

A recipe is ``settings`` (values for every model) plus ``model_overrides`` (values for the
models whose name matches an fnmatch pattern). ``load_config`` fills every option that the
config file and the command line leave unset from the recipe; the resolved values are what
``config.yaml`` records. The built-in recipes live in ``cnnbench/recipes/*.yaml``; a path to a
YAML file of the same shape works too.
"""

from __future__ import annotations

import fnmatch
from importlib import resources
from pathlib import Path
from typing import Any

from cnnbench.train.errors import ConfigError, read_yaml

_ALLOWED = {"description", "settings", "model_overrides"}


def list_recipes() -> list[str]:
    """Names of the built-in recipes."""
    folder = resources.files("cnnbench") / "recipes"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def recipe_path(name: str) -> Path:
    """The YAML file of a built-in recipe name, or ``name`` itself if it is a file."""
    if name in list_recipes():
        return Path(str(resources.files("cnnbench") / "recipes" / f"{name}.yaml"))
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    raise ConfigError(
        f"unknown recipe {name!r}; choose one of {', '.join(list_recipes())} or a YAML file"
    )


def load_recipe(name: str) -> dict[str, Any]:
    """The recipe as ``{"description", "settings", "model_overrides"}``; ConfigError if malformed."""
    path = recipe_path(name)
    data = read_yaml(path, "recipe file") or {}
    if not isinstance(data, dict) or set(data) - _ALLOWED:
        extra = sorted(set(data) - _ALLOWED) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{path}: a recipe has only {sorted(_ALLOWED)}, got {extra}")
    settings = data.get("settings") or {}
    overrides = data.get("model_overrides") or {}
    if not isinstance(settings, dict) or not isinstance(overrides, dict):
        raise ConfigError(f"{path}: settings and model_overrides must be mappings")
    for pattern, values in overrides.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: model_overrides[{pattern!r}] must be a mapping")
    for key in ("recipe", "model", "name"):
        if key in settings:
            raise ConfigError(f"{path}: a recipe cannot set {key!r}")
    return {"description": data.get("description", ""), "settings": settings,
            "model_overrides": overrides}  # fmt: skip


def recipe_values(name: str, model: str) -> dict[str, Any]:
    """The values recipe ``name`` gives a run of ``model``: settings, then matching overrides."""
    recipe = load_recipe(name)
    values = dict(recipe["settings"])
    for pattern, extra in recipe["model_overrides"].items():
        if fnmatch.fnmatchcase(model, pattern):
            values.update(extra)
    return values
