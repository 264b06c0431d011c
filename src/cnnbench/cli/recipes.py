"""`cnnbench recipes`: the named training recipes and what each sets."""

from __future__ import annotations

import argparse

import yaml


def _cmd_recipes(args: argparse.Namespace) -> int:
    from cnnbench.cli import UserError
    from cnnbench.train.config import ConfigError
    from cnnbench.train.recipes import list_recipes, load_recipe, recipe_path

    names = [args.name] if args.name else list_recipes()
    for name in names:
        try:
            recipe = load_recipe(name)
        except ConfigError as e:
            raise UserError(str(e)) from None
        if args.name:  # one recipe: its whole file, ready to copy
            print(f"# {recipe_path(name)}")
            print(recipe_path(name).read_text())
            continue
        print(f"{name:<10} {recipe['description']}")
        print(f"{'':<10} {yaml.safe_dump(recipe['settings'], default_flow_style=True).strip()}")
        for pattern, values in recipe["model_overrides"].items():
            flow = yaml.safe_dump(values, default_flow_style=True).strip()
            print(f"{'':<10} for {pattern}: {flow}")
    if not args.name:
        print("\nuse: cnnbench train --recipe NAME (or a YAML file of the same shape); "
              "options you give win over the recipe's")  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `recipes` sub-command."""
    p = sub.add_parser(
        "recipes", help="list the named training recipes",
        description="The named recipes (--recipe NAME): what each sets, for every model and "
        "for some architectures only. With a NAME, print its YAML file to copy and change.",
    )  # fmt: skip
    p.add_argument("name", nargs="?", default=None, help="one recipe to print in full")
    p.set_defaults(func=_cmd_recipes)
