"""Study files: validation (one line, exit 2), grid expansion, run names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cnnbench.cli import main
from cnnbench.study import load_study, parse_study
from cnnbench.train import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_cartesian_grid_expands_to_the_product_with_readable_names():
    study = parse_study(
        {
            "base": {"model": "lenet5", "epochs": 2},
            "grid": {"optimizer": ["sgd", "adam"], "lr": [0.1, 0.01, 0.001], "seed": [0, 1]},
        }
    )
    names = [c.run_name() for c in study.runs]
    assert len(names) == 2 * 3 * 2 == len(set(names))
    assert names[0] == "lenet5-sgd-lr0.1-s0"
    assert "lenet5-adam-lr0.001-s1" in names
    assert study.varied == ["lr", "optimizer", "seed"]
    assert all(c.epochs == 2 and c.model == "lenet5" for c in study.runs)


def test_explicit_runs_are_crossed_with_the_grid():
    study = parse_study(
        {
            "base": {"epochs": 1},
            "runs": [
                {"model": "resnet34", "optimizer": "sgd", "lr": 0.1},
                {"model": "lenet5", "optimizer": "adam", "lr": 0.001},
            ],
            "grid": {"seed": [0, 1, 2]},
        }
    )
    assert [c.run_name() for c in study.runs] == [
        *(f"resnet34-sgd-lr0.1-s{s}" for s in range(3)),
        *(f"lenet5-adam-lr0.001-s{s}" for s in range(3)),
    ]


def test_other_varied_settings_join_the_name():
    study = parse_study(
        {
            "base": {"model": "mobilenetv2_reduced"},
            "grid": {"dataset": ["cifar10", "cifar100"], "train_subset": [1000, 2000]},
        }
    )
    names = [c.run_name() for c in study.runs]
    assert names == [
        "mobilenetv2_reduced-cifar10-sgd-lr0.01-n1000-s0",
        "mobilenetv2_reduced-cifar10-sgd-lr0.01-n2000-s0",
        "mobilenetv2_reduced-cifar100-sgd-lr0.01-n1000-s0",
        "mobilenetv2_reduced-cifar100-sgd-lr0.01-n2000-s0",
    ]
    # Names are a function of the study, not of the order of dict keys or of the run.
    again = parse_study(
        {
            "grid": {"train_subset": [1000, 2000], "dataset": ["cifar10", "cifar100"]},
            "base": {"model": "mobilenetv2_reduced"},
        }
    )
    assert sorted(c.run_name() for c in again.runs) == sorted(names)


def test_study_name_is_the_file_stem_unless_given(tmp_path):
    path = _write(tmp_path, {"grid": {"seed": [0, 1]}}, "my-grid.yaml")
    assert load_study(path).name == "my-grid"
    path = _write(tmp_path, {"name": "other", "grid": {"seed": [0]}}, "x.yaml")
    assert load_study(path).name == "other"


def test_overrides_apply_to_every_run_even_grid_axes(tmp_path):
    path = _write(tmp_path, {"base": {"epochs": 5}, "grid": {"epochs": [1, 2], "seed": [0, 1]}})
    study = load_study(path, {"epochs": 3, "threads": 1})
    assert [c.epochs for c in study.runs] == [3, 3]
    assert all(c.threads == 1 for c in study.runs)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"grid": {"optimizer": []}}, "grid.optimizer: empty list"),
        ({"base": {"epochs": 1}}, "the study has no runs"),
        ({"runs": []}, "the study has no runs"),
        ({"grid": {"learning_rate": [0.1]}}, "unknown run option 'learning_rate'"),
        ({"base": {"optimiser": "sgd"}, "grid": {"seed": [0]}}, "unknown run option 'optimiser'"),
        ({"runs": [{"lr": 0.1, "colour": 1}]}, "runs[0]: unknown run option 'colour'"),
        ({"gird": {"seed": [0]}}, "unknown study key 'gird'"),
        ({"grid": {"lr": [0.1, -1]}}, "lr: Input should be greater than 0"),
        ({"grid": {"model": ["lenet5", "vgg99"]}}, "unknown model 'vgg99'"),
        ({"grid": {"optimizer": ["sgd", "lion"]}}, "optimizer: Input should be"),
        ({"grid": {"epochs": 3}}, "grid.epochs: expected a list"),
        ({"runs": [{"lr": 0.1}, {"lr": 0.1}]}, "are the same run"),
        ({"runs": [{"seed": 1}], "grid": {"seed": [0]}}, "set both here and in grid"),
        ({"name": "a b", "grid": {"seed": [0]}}, "name: 'a b'"),
    ],
)
def test_invalid_study_is_one_line_and_exit_2(tmp_path, capsys, data, fragment):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=None) as info:
        load_study(path)
    assert fragment in str(info.value)
    assert main(["study", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnbench study: error: ")
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_missing_file_and_bad_yaml_exit_2(tmp_path, capsys):
    assert main(["study", str(tmp_path / "nope.yaml")]) == 2
    assert "study file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    assert main(["study", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["study", str(bad), "--set", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_dry_run_lists_runs_and_trains_nothing(tmp_path, capsys):
    path = _write(tmp_path, {"base": {"model": "lenet5"}, "grid": {"optimizer": ["sgd", "adam"]}})
    runs = tmp_path / "runs"
    assert main(["study", str(path), "--runs-dir", str(runs), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "lenet5-sgd-lr0.01-s0" in out and "lenet5-adam-lr0.01-s0" in out
    assert "0 complete, 2 to train" in out
    assert not runs.exists()


@pytest.mark.parametrize("name", ["quick", "paper", "recipes"])
def test_shipped_studies_are_valid(name):
    study = load_study(REPO / "studies" / f"{name}.yaml")
    assert study.name == name and study.runs
    assert study.description


def test_paper_study_is_table_1_with_three_seeds():
    from cnnbench.report import PAPER_TABLE1

    study = load_study(REPO / "studies" / "paper.yaml")
    settings = {(c.model, c.optimizer, c.lr) for c in study.runs}
    assert settings == {(m, o, lr) for m, o, lr, _ in PAPER_TABLE1}
    assert len(study.runs) == 3 * len(PAPER_TABLE1)
    assert {c.dataset for c in study.runs} == {"cifar10"}


# ---------------------------------------------------------------- names from what was written
QUICK_NAMES = [
    *(
        f"{m}-sgd-lr{lr}-budgetminutes1.5-recipefast-s0"
        for m, lr in (("fastnet_small", "0.75"), ("resnet8", "0.75"), ("mobilenetv2_x0_5", "0.4"),
                      ("mobilenetv2_reduced", "0.4"), ("lenet5_relu", "0.2"), ("lenet5", "0.2"))
    ),
    *(
        f"lenet5-{o}-lr{lr}-e2-recipepaper-n10000-s0"
        for o in ("sgd", "adam", "adadelta")
        for lr in ("0.1", "0.01", "0.001")
    ),
]  # fmt: skip


def test_quick_study_names_are_what_its_file_varies():
    study = load_study(REPO / "studies" / "quick.yaml")
    assert [c.run_name() for c in study.runs] == QUICK_NAMES
    # the recipes' own values (batch size, momentum, EMA...) are not "varied settings"
    assert study.varied == [
        "budget_minutes", "epochs", "lr", "model", "optimizer", "recipe", "train_subset",
    ]  # fmt: skip
    fast = study.runs[0]
    assert fast.batch_size == 512 and fast.ema_decay == 0.99  # still resolved from the recipe


def test_names_without_a_recipe_are_unchanged():
    """Studies without recipes name every varied setting of every run, as before."""
    assert [c.run_name() for c in load_study(REPO / "studies" / "recipes.yaml").runs][:2] == [
        "lenet5-cifar10-sgd-lr0.1-s0",
        "lenet5-cifar100-sgd-lr0.1-s0",
    ]
    study = parse_study({"runs": [{"model": "lenet5"}, {"model": "resnet8", "epochs": 3}]})
    assert [c.run_name() for c in study.runs] == [
        "lenet5-sgd-lr0.01-e15-s0",
        "resnet8-sgd-lr0.01-e3-s0",
    ]
    # written differently but resolving alike: not varied (15 is the default)
    study = parse_study({"runs": [{"model": "lenet5"}, {"model": "resnet8", "epochs": 15}]})
    assert [c.run_name() for c in study.runs] == ["lenet5-sgd-lr0.01-s0", "resnet8-sgd-lr0.01-s0"]


def test_a_recipe_run_names_only_the_settings_it_wrote():
    study = parse_study(
        {
            "base": {"dataset": "cifar10"},
            "runs": [
                {"recipe": "fast", "model": "fastnet_small"},
                {"recipe": "fast", "model": "fastnet_small", "batch_size": 256},
                {"model": "lenet5", "batch_size": 64},
            ],
        }
    )
    assert [c.run_name() for c in study.runs] == [
        "fastnet_small-sgd-lr0.75-recipefast-s0",
        "fastnet_small-sgd-lr0.75-b256-recipefast-s0",
        "lenet5-sgd-lr0.01-b64-recipenone-s0",  # no recipe: every varied setting, as before
    ]
    assert study.varied == ["batch_size", "model", "recipe"]  # lr: in every name anyway


def test_a_run_the_recipe_already_is_is_a_duplicate():
    # The recipe gives fastnet_small batch 512: the second run is the first one again, under
    # another name, which the name check alone would miss.
    runs = [
        {"recipe": "fast", "model": "fastnet_small"},
        {"recipe": "fast", "model": "fastnet_small", "batch_size": 512},
        {"recipe": "fast", "model": "fastnet_small", "batch_size": 256},
    ]
    with pytest.raises(ConfigError, match=r"runs 1 and 2 of the study are the same run"):
        parse_study({"runs": runs})


def test_dry_run_shows_the_budget_of_budget_runs(capsys):
    assert main(["study", str(REPO / "studies" / "quick.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if QUICK_NAMES[0] in ln)
    assert line.rstrip().endswith("cifar10, budget 1.5 min") and "epochs" not in line
    line = next(ln for ln in out.splitlines() if QUICK_NAMES[-1] in ln)
    assert line.rstrip().endswith("cifar10, 2 epochs, 10,000 images")
