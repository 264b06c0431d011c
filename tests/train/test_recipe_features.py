"""Recipe features: EMA, TTA, alternating flips, data-dependent init from the training split
only, time budgets, the learning-rate conventions, named recipes, exact resume with EMA."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from cnnbench.data import ImageDataset, train_val_split
from cnnbench.data.augment import Augment, BatchIterator
from cnnbench.models import create_model, list_models
from cnnbench.train import ConfigError, load_checkpoint, load_config, train
from cnnbench.train.budget import FILL_BELOW, plan_budget
from cnnbench.train.distributed import DistInfo
from cnnbench.train.ema import ModelEMA
from cnnbench.train.loop import TTA_VIEWS, predict_logits, tta_view
from cnnbench.train.optim import build_optimizer
from cnnbench.train.recipes import list_recipes, load_recipe, recipe_values
from cnnbench.train.trainer import _Data

# --- EMA ---------------------------------------------------------------------------------------


def test_ema_follows_the_lerp_formula_with_warmup():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9)
    start = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(4.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update()
    d = min(0.9, 2 / 11)  # the warm-up decay of the first update
    for p0, p_ema, p in zip(start, ema.module.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p_ema, d * p0 + (1 - d) * p.detach())
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((2,), (1 - d) * 4.0))
    assert int(ema.module[1].num_batches_tracked) == 7  # integers are copied, not averaged
    for _ in range(200):
        ema.update()
    assert ema.current_decay() == 0.9  # warm-up over
    for p_ema, p in zip(ema.module.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p_ema, p.detach(), atol=1e-6, rtol=0)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_state_round_trips():
    model = nn.Linear(4, 2)
    ema = ModelEMA(model, 0.99)
    for _ in range(3):
        ema.update()
    other = ModelEMA(nn.Linear(4, 2), 0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3
    torch.testing.assert_close(other.module.weight, ema.module.weight)


# --- TTA ---------------------------------------------------------------------------------------


def test_tta_views_weights_sum_to_one_and_views_move_pixels():
    for views in TTA_VIEWS.values():
        assert sum(w for *_, w in views) == pytest.approx(1.0)
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    torch.testing.assert_close(tta_view(x, True, 0, 0), x.flip(-1))
    moved = tta_view(x, False, 1, 1)
    torch.testing.assert_close(moved[..., 1:, 1:], x[..., :-1, :-1])  # down-right by one
    assert tta_view(x, False, -1, -1).shape == x.shape


def test_flip_tta_is_the_mean_of_both_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5)).eval()
    x = torch.randn(6, 3, 8, 8)
    y = torch.zeros(6, dtype=torch.long)
    model(x)  # materialise the lazy layer
    got, _ = predict_logits(model, [(x, y)], device=torch.device("cpu"), tta="flip")
    with torch.no_grad():
        want = 0.5 * model(x) + 0.5 * model(x.flip(-1))
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="tta"):
        predict_logits(model, [(x, y)], device=torch.device("cpu"), tta="rotate")


# --- alternating flips -------------------------------------------------------------------------


def _toy_dataset(n: int = 64) -> ImageDataset:
    # Image i is filled with the value i: every image can be told apart by its pixels.
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    y = torch.arange(n) % 2
    return ImageDataset("cifar10", x, y, x[:8].clone(), y[:8].clone(), ["a", "b"], "toy")


def _toy_data(**kw) -> _Data:
    cfg = load_config({"model": "lenet5", "val_size": 16, "batch_size": 8, **kw})
    return _Data(_toy_dataset(), cfg, torch.device("cpu"), DistInfo())


def test_alternating_flips_invert_every_epoch():
    data = _toy_data(flip="alternate")
    f1, f2, f3 = (data.epoch_flips(e) for e in (1, 2, 3))
    assert f1 is not None and 0 < int(f1.sum()) < len(f1)
    assert torch.equal(f2, ~f1) and torch.equal(f3, f1)
    assert _toy_data(flip="random").epoch_flips(1) is None


def test_cutout_option_reaches_the_training_batches_only():
    """--cutout S: every training batch is cut (images of 4x4 with S=2: at least 1 of 16
    pixels at the mean, 0), validation batches never; off by default."""
    data = _toy_data(cutout=2, augment=False)
    gen = torch.Generator().manual_seed(0)
    cut = torch.cat([xb for xb, _ in data.train_batches(gen)])
    assert cut.eq(0).all(1).flatten(1).sum(1).min() >= 1
    plain = torch.cat([xb for xb, _ in _toy_data(augment=False).train_batches(gen)])
    assert plain.eq(0).all(1).flatten(1).sum(1).max() == 0  # no toy pixel sits at the mean
    val = torch.cat([xb for xb, _ in data.eval_batches(data.x_val, data.y_val)])
    assert val.eq(0).all(1).sum() == 0


def test_batch_iterator_uses_the_given_flips():
    n = 16
    x = torch.arange(n * 3 * 2 * 2, dtype=torch.uint8).view(n, 3, 2, 2)
    flips = torch.arange(n) % 3 == 0
    it = BatchIterator(x, torch.zeros(n, dtype=torch.long), 4, shuffle=False,
                       augment=Augment(crop_padding=0), mean=(0, 0, 0), std=(1, 1, 1),
                       generator=torch.Generator().manual_seed(0), flips=flips)  # fmt: skip
    out = torch.cat([xb for xb, _ in it])
    want = torch.where(flips[:, None, None, None], x.flip(-1), x).float() / 255
    torch.testing.assert_close(out, want)


# --- data-dependent init sees training images only ---------------------------------------------


def test_init_images_come_from_the_training_split_only():
    data = _toy_data()
    train_idx, val_idx = train_val_split(64, 16, 0)
    imgs = data.init_images(1000)  # more than there are: all training images, no others
    values = set(
        torch.round(imgs[:, 0, 0, 0] * data.std[0] * 255 + data.mean[0] * 255).int().tolist()
    )
    assert values == set(train_idx.tolist())
    assert not values & set(val_idx.tolist())


def test_trainer_whitens_fastnet_from_training_images(data_dir, tmp_path, monkeypatch):
    from cnnbench.models.fastnet import FastNet

    seen: list[torch.Tensor] = []
    original = FastNet.init_from_data
    monkeypatch.setattr(FastNet, "init_from_data",
                        lambda self, images: (seen.append(images), original(self, images))[1])  # fmt: skip
    cfg = load_config({"model": "fastnet_tiny", "data_dir": str(data_dir), "epochs": 1,
                       "train_subset": 300, "val_size": 200, "test_subset": 100,
                       "data_init_images": 250, "batch_size": 100, "threads": 1,
                       "name": "w"})  # fmt: skip
    train(cfg, runs_dir=tmp_path, progress=False)
    assert len(seen) == 1 and seen[0].shape == (250, 3, 32, 32)
    # De-normalise and match every image against the training and validation pixels.
    from cnnbench.data import load_dataset

    ds = load_dataset("cifar10", data_dir=str(data_dir))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in ds.mean_std())
    back = torch.round((seen[0] * std + mean) * 255).clamp(0, 255).to(torch.uint8)
    data = _Data(ds, cfg, torch.device("cpu"), DistInfo())
    train_keys = {bytes(img.numpy().tobytes()) for img in data.x_train}
    val_keys = {bytes(img.numpy().tobytes()) for img in data.x_val}
    got = [bytes(img.numpy().tobytes()) for img in back]
    assert all(k in train_keys for k in got)
    assert not any(k in val_keys for k in got)
    ckpt = load_checkpoint(tmp_path / "w" / "best.pt")
    assert not torch.equal(ckpt["model"]["stem.weight"],
                           create_model("fastnet_tiny").stem.weight)  # fmt: skip


# --- learning-rate conventions -----------------------------------------------------------------


def test_lr_per_batch_is_scaled_linearly_and_bias_lr_mult_applies_to_1d_params():
    cfg = load_config({"model": "resnet8", "lr": 0.4, "lr_batch": 512, "batch_size": 128,
                       "bias_lr_mult": 8.0, "weight_decay": 1e-3})  # fmt: skip
    assert cfg.effective_lr == pytest.approx(0.1)
    model = create_model("resnet8")
    opt = build_optimizer(model, cfg)
    decay, other, norm = opt.param_groups
    assert decay["lr"] == pytest.approx(0.1) and decay["weight_decay"] == 1e-3
    # BatchNorm parameters learn 8x faster; the head's (and convs') biases do not.
    bn = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in norm["params"]} == bn
    assert norm["lr"] == pytest.approx(0.8) and norm["weight_decay"] == 0.0
    assert any(p is model.head.bias for p in other["params"])
    assert other["lr"] == pytest.approx(0.1) and other["weight_decay"] == 0.0


def test_bn_freeze_scale_keeps_scales_at_one(data_dir, tmp_path):
    cfg = load_config({"model": "resnet8", "data_dir": str(data_dir), "epochs": 1,
                       "train_subset": 200, "val_size": 100, "test_subset": 100,
                       "batch_size": 100, "threads": 1, "bn_freeze_scale": True,
                       "bn_momentum": 0.5, "name": "bn"})  # fmt: skip
    train(cfg, runs_dir=tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "bn" / "last.pt")["model"]
    scales = [v for k, v in state.items() if k.endswith("bn1.weight") or k.endswith("bn2.weight")]
    assert scales and all(torch.equal(s, torch.ones_like(s)) for s in scales)


# --- budgets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "step", "want"),
    [(80, 1, (8, None)),  # 10 steps per epoch: 8 whole epochs fit, every image
     (10, 1, (1, None)),  # exactly one epoch
     (19, 1, (2, 950)),  # 1.9 epochs: two epochs of 95 % of the images, not one
     (5, 1, (1, 500)),  # half an epoch: one epoch of half the images
     (0.01, 1, (1, 100))],  # nothing fits: one batch, never zero images
)  # fmt: skip
def test_plan_budget_cases(budget, step, want):
    assert plan_budget(budget, step, 0.0, n_train=1000, batch_size=100) == want


@given(budget=st.floats(1, 1e4), step=st.floats(1e-3, 10), eval_s=st.floats(0, 5),
       n=st.integers(1, 50_000), batch=st.integers(1, 1024))  # fmt: skip
def test_plan_budget_fills_without_overrunning(budget, step, eval_s, n, batch):
    epochs, subset = plan_budget(budget, step, eval_s, n, batch)
    images = n if subset is None else subset
    assert epochs >= 1 and 1 <= images <= n
    planned = epochs * (-(-images // batch) * step + eval_s)
    one_epoch = -(-n // batch) * step + eval_s
    if images > min(batch, n):  # not clamped to the one-batch minimum
        assert planned <= budget + epochs * step + 1e-6  # at most one partial batch an epoch over
    if budget >= FILL_BELOW * one_epoch:
        assert subset is None and planned >= budget * (FILL_BELOW / (FILL_BELOW + 1)) - 1e-6


def test_plan_budget_with_steps_that_get_dearer():
    # 10 steps an epoch at 0.1, 0.2, then 0.3 s from epoch 3 on: epochs cost 1, 2, 3, 3, ...
    costs = {1: 0.1, 2: 0.2}
    asked = []

    def step_s(epoch):
        asked.append(epoch)
        return costs.get(epoch, 0.3)

    assert plan_budget(12, step_s, 0.0, 1000, 100, steady_from=3) == (5, None)  # 1+2+3+3+3
    # 2.17 epochs fit: three epochs of the images that fill 3.5 s at the mean step of 0.2 s
    assert plan_budget(3.5, step_s, 0.0, 1000, 100, steady_from=3) == (3, 583)
    asked.clear()
    assert plan_budget(0.5, step_s, 0.0, 1000, 100, steady_from=3) == (1, 500)
    assert set(asked) == {1}  # the budget ends inside epoch 1: no other state is timed


@given(budget=st.floats(0.1, 1e3), steps=st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=6),
       eval_s=st.floats(0, 1), n=st.integers(1, 5000), batch=st.integers(1, 512))  # fmt: skip
@example(budget=10.0, steps=[0.5], eval_s=0.0, n=6, batch=1)  # 3.3 epochs fit: 4 on a subset
@settings(deadline=None)  # pure arithmetic; a loaded machine must not fail it on time
def test_plan_budget_with_changing_steps_never_overruns_in_whole_epochs(
    budget, steps, eval_s, n, batch
):
    steps = sorted(steps)  # steps get dearer as groups unfreeze

    def step_s(epoch):
        return steps[min(epoch, len(steps)) - 1]

    epochs, subset = plan_budget(budget, step_s, eval_s, n, batch, steady_from=len(steps))

    def cost(k):  # of the first k epochs; every epoch from len(steps) on costs the same
        each = [-(-n // batch) * s + eval_s for s in steps]
        return sum(each[: min(k, len(each))]) + max(0, k - len(each)) * each[-1]

    if cost(FILL_BELOW) < budget * (1 - 1e-9):  # whole epochs on every image: all that fit
        assert subset is None
        assert cost(epochs) <= budget * (1 + 1e-9) < cost(epochs + 1) * (1 + 1e-9)
    elif cost(FILL_BELOW) > budget * (1 + 1e-9):  # fewer fit: the next whole number, on a subset
        assert epochs <= FILL_BELOW and cost(epochs - 1) < budget * (1 + 1e-9)
        assert subset is None or 1 <= subset < n


def test_plan_budget_rejects_nonsense():
    with pytest.raises(ValueError):
        plan_budget(0, 1, 0, 10, 1)
    with pytest.raises(ValueError):  # a step that costs nothing
        plan_budget(10, 0, 0, 10, 1)
    with pytest.raises(ValueError):  # a timed state that costs nothing
        plan_budget(10, lambda epoch: 0.1 if epoch == 1 else 0.0, 0, 10, 1, steady_from=3)


def test_budget_run_writes_its_resolved_epochs(data_dir, tmp_path):
    cfg = load_config({"model": "lenet5", "data_dir": str(data_dir), "budget_minutes": 0.02,
                       "train_subset": 400, "val_size": 100, "test_subset": 100,
                       "batch_size": 100, "threads": 1, "name": "b",
                       "schedule": "onecycle"})  # fmt: skip
    summary = train(cfg, runs_dir=tmp_path, progress=False)
    info = summary["budget"]
    written = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert written["epochs"] == summary["epochs"]
    # The plan; the real epochs may then have re-planned it (tests/train/test_budget_replan.py).
    replans = written["budget_replans"]
    assert info["epochs"] == (replans[0]["from_epochs"] if replans else written["epochs"])
    assert summary["budget_replans"] == replans
    assert (info["epochs"], info["train_subset"]) == plan_budget(
        info["budget_s"], info["step_s"], info["eval_s"], 400, 100
    )
    assert written["budget_minutes"] == 0.02 and summary["fit_time_s"] > 0
    rows = [json.loads(s) for s in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == summary["epochs"]
    # The same command resumes the complete run without re-timing anything.
    assert train(cfg, runs_dir=tmp_path, resume=True, progress=False) == summary


def test_budget_shorter_than_an_epoch_trains_one_epoch_of_what_fits(data_dir, tmp_path):
    cfg = load_config({"model": "resnet8", "data_dir": str(data_dir), "budget_minutes": 0.004,
                       "train_subset": 3000, "val_size": 100, "test_subset": 100,
                       "batch_size": 100, "threads": 1, "name": "cut"})  # fmt: skip
    summary = train(cfg, runs_dir=tmp_path, progress=False)
    written = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    assert summary["budget"]["epoch_s_estimate"] > 0.004 * 60  # one epoch did not fit
    assert written["epochs"] == 1 and 100 <= written["train_subset"] < 3000
    assert summary["train_images"] == written["train_subset"]
    assert train(cfg, runs_dir=tmp_path, resume=True, progress=False) == summary


# --- recipes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["fast", "paper", "standard"])
def test_recipes_validate_for_every_model(recipe):
    assert recipe in list_recipes()
    for model in list_models():
        cfg = load_config(None, recipe=recipe, model=model)
        assert cfg.recipe == recipe


def test_recipe_precedence_and_model_overrides():
    fast = load_recipe("fast")
    cfg = load_config(None, recipe="fast", model="fastnet_small", lr=0.3)
    assert cfg.lr == 0.3  # the command line wins
    assert cfg.batch_size == fast["settings"]["batch_size"]
    assert cfg.bias_lr_mult == 64.0 and cfg.bn_freeze_scale  # fastnet* overrides
    other = load_config(None, recipe="fast", model="resnet20")
    assert other.bias_lr_mult == 1.0 and not other.bn_freeze_scale
    assert recipe_values("fast", "resnet20") == fast["settings"]


def test_bad_recipes_fail_with_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_config(None, recipe="fastest")
    bad = tmp_path / "r.yaml"
    bad.write_text("settings: {lr: 0.1, wings: 2}\n")
    with pytest.raises(ConfigError, match="wings"):
        load_config(None, recipe=str(bad))
    bad.write_text("setting: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match="a recipe has only"):
        load_config(None, recipe=str(bad))


def test_user_recipe_file_is_applied(tmp_path: Path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "settings: {lr: 0.123, batch_size: 32}\nmodel_overrides: {'lenet*': {lr: 0.5}}\n"
    )
    assert load_config(None, recipe=str(mine), model="resnet8").lr == 0.123
    assert load_config(None, recipe=str(mine), model="lenet5").lr == 0.5


# --- exact resume with EMA ---------------------------------------------------------------------


class _Stop(Exception):
    pass


def test_resume_with_ema_is_exact(data_dir, tmp_path):
    base = {"model": "resnet8", "data_dir": str(data_dir), "epochs": 3, "train_subset": 300,
            "val_size": 100, "test_subset": 200, "batch_size": 50, "threads": 1,
            "ema_decay": 0.9, "tta": "flip", "flip": "alternate", "crop_padding": 2,
            "schedule": "onecycle", "optimizer": "sgd", "lr": 0.05, "nesterov": True}  # fmt: skip
    ref = train(load_config({**base, "name": "ref"}), runs_dir=tmp_path, progress=False)

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise _Stop

    cfg = load_config({**base, "name": "cut"})
    with pytest.raises(_Stop):
        train(cfg, runs_dir=tmp_path, progress=False, on_epoch_end=stop_after_first)
    got = train(cfg, runs_dir=tmp_path, resume=True, progress=False)
    keys = ("train_loss", "val_loss", "val_acc", "lr")
    rows = {n: [json.loads(s) for s in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
            for n in ("ref", "cut")}  # fmt: skip
    assert [[r[k] for k in keys] for r in rows["cut"]] == [
        [r[k] for k in keys] for r in rows["ref"]
    ]
    for key in ("test_acc", "test_acc_tta", "best_epoch", "best_val_acc"):
        assert got[key] == ref[key], key
    assert got["weights"] == "ema" and got["tta_views"] == 2
    ckpt = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert ckpt["weights"] == "ema" and ckpt["ema_updates"] == 3 * 6
    assert set(ckpt["train_model"]) == set(ckpt["model"])


def test_time_steps_stops_early_on_slow_steps():
    """Slow steps: one warm-up step and two timed ones, not warmup + timed of them."""
    from cnnbench.train.budget import time_steps

    calls = []

    class Slow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            calls.append(1)
            time.sleep(0.05)
            return x * self.w

    batches = iter([(torch.ones(2, 3), torch.zeros(2, dtype=torch.long))] * 20)
    step = time_steps(Slow(), lambda m: torch.optim.SGD(m.parameters(), lr=0.1), batches,
                      torch.nn.functional.cross_entropy, warmup=2, timed=5, max_seconds=0.08)  # fmt: skip
    assert len(calls) == 3 and step >= 0.05


def test_time_steps_counts_the_batch_fetch_and_times_at_least_min_seconds():
    """The augmentation (fetching a batch) is part of a step; fast steps are timed for a while."""
    from cnnbench.train.budget import time_steps

    fetched = []

    def slow_batches():
        while True:
            time.sleep(0.02)  # a costly augmentation
            fetched.append(1)
            yield torch.ones(2, 3), torch.zeros(2, dtype=torch.long)

    model = torch.nn.Linear(3, 3)
    step = time_steps(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), slow_batches(),
                      torch.nn.functional.cross_entropy, warmup=1, timed=2, min_seconds=0.3)  # fmt: skip
    assert step >= 0.02
    timed = len(fetched) - 1  # one warm-up step
    assert timed >= 2 and step * timed >= 0.3 - 1e-9  # at least min_seconds of timed steps
