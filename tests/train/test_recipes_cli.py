"""`cnnbench recipes` and `cnnbench train --recipe` from the command line."""

from __future__ import annotations

import yaml

from cnnbench.cli import main


def test_recipes_lists_every_recipe(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("fast", "paper", "standard"):
        assert name in out
    assert "for fastnet*" in out


def test_one_recipe_prints_a_file_that_loads(capsys):
    assert main(["recipes", "fast"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text.split("\n", 1)[1])
    assert data["settings"]["batch_size"] == 512


def test_unknown_recipe_is_one_line(capsys):
    assert main(["recipes", "fastest"]) == 2
    assert "unknown recipe" in capsys.readouterr().err
