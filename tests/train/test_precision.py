"""--amp fastest: real steps timed in each precision choose the faster, written down once."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from cnnbench.models import create_model
from cnnbench.train import load_config, train
from cnnbench.train import precision as precision_mod
from cnnbench.train.budget import endless_batches
from cnnbench.train.precision import amp_dtype_for, fastest_amp, time_precision

CPU = torch.device("cpu")


def test_fastest_picks_the_faster_precision_where_bf16_is_in_hardware(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_has_bf16_matmul", lambda: True)
    seen = []

    def timed(costs):
        def step(dtype):
            seen.append(dtype)
            return costs[dtype]

        return step

    chosen, probe = fastest_amp(CPU, timed({None: 0.5, torch.bfloat16: 0.3}))
    assert chosen == "bf16" and probe["step_s"] == {"off": 0.5, "bf16": 0.3}
    assert seen == [None, torch.bfloat16]
    chosen, probe = fastest_amp(CPU, timed({None: 0.2, torch.bfloat16: 0.3}))
    assert chosen == "off" and probe["chosen"] == "off"


def test_without_hardware_bf16_fastest_is_float32_untimed(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_has_bf16_matmul", lambda: False)

    def never(dtype):
        raise AssertionError("timed a precision with no candidate to compare")

    assert fastest_amp(CPU, never) == (
        "off",
        {"chosen": "off", "step_s": {}, "candidates": ["off"]},
    )


def test_amp_choices_map_to_dtypes(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_has_bf16_matmul", lambda: False)
    assert amp_dtype_for("auto", CPU) is None and amp_dtype_for("off", CPU) is None
    assert amp_dtype_for("bf16", CPU) is torch.bfloat16
    assert amp_dtype_for("auto", torch.device("cuda")) is torch.bfloat16
    with pytest.raises(ValueError, match="resolved"):
        amp_dtype_for("fastest", CPU)


def test_timing_a_precision_leaves_the_model_untouched():
    model = create_model("lenet5", num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = (torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    batches = endless_batches(lambda: iter([batch]))  # as many as a full second of steps needs
    step = time_precision(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), batches,
                          torch.nn.functional.cross_entropy, ema_decay=0.9,
                          sync=lambda: None, device_type="cpu")  # fmt: skip
    assert step(None) > 0 and step(torch.bfloat16) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- in a run ----------------------------------------------------------------------------------


def _cfg(data_dir, name, **kw):
    return load_config({"model": "lenet5", "data_dir": str(data_dir), "epochs": 3,
                        "train_subset": 200, "val_size": 100, "test_subset": 100,
                        "batch_size": 50, "threads": 1, "ema_decay": 0.9, "lr": 0.05,
                        "name": name, **kw})  # fmt: skip


class _Stop(Exception):
    pass


@pytest.mark.parametrize("faster", ["off", "bf16"])
def test_a_fastest_run_writes_its_choice_and_keeps_it(data_dir, tmp_path, monkeypatch, faster):
    monkeypatch.setattr(precision_mod, "cpu_has_bf16_matmul", lambda: True)
    costs = {"off": 2.0, "bf16": 1.0} if faster == "bf16" else {"off": 1.0, "bf16": 2.0}
    probes = []

    def fake_time_precision(*a, **k):
        probes.append(1)
        return lambda dtype: costs["bf16" if dtype is torch.bfloat16 else "off"]

    monkeypatch.setattr(precision_mod, "time_precision", fake_time_precision)

    def stop_after_1(row):
        if row["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train(_cfg(data_dir, "cut", amp="fastest"), runs_dir=tmp_path, progress=False,
              on_epoch_end=stop_after_1)  # fmt: skip
    written = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    assert written["amp"] == faster and probes == [1]
    got = train(_cfg(data_dir, "cut", amp="fastest"), runs_dir=tmp_path, resume=True,
                progress=False)  # fmt: skip
    assert probes == [1]  # the resumed run kept the first start's choice, timing nothing
    assert got["train_precision"] == ("bfloat16" if faster == "bf16" else "float32")
    assert got["amp_probe"]["chosen"] == faster and got["amp_probe"]["step_s"] == costs

    # The precision given outright trains the same run: the probe drew no random numbers.
    plain = train(_cfg(data_dir, "plain", amp=faster), runs_dir=tmp_path, progress=False)
    rows = [(tmp_path / n / "metrics.jsonl").read_text().splitlines() for n in ("cut", "plain")]
    keys = ("train_loss", "val_loss", "val_acc", "lr")
    cut, ref = ([[json.loads(r)[k] for k in keys] for r in rs] for rs in rows)
    assert cut == ref and got["test_acc"] == plain["test_acc"] and plain["amp_probe"] is None
