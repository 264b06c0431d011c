"""The configuration error and the YAML reader every config file (run, recipe, study) uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A run or study configuration that cannot be used; the message is one line for the user."""


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML file's content; ConfigError (one line) if it is missing or not valid YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__})") from None
