"""Every registered model is tested by the same parametrised tests (timm's pattern), plus
pinned parameter counts and a few architecture-specific checks."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnbench.models import create_model, list_models, register_model
from cnnbench.models.mobilenetv2 import InvertedResidual

ALL_MODELS = list_models()

# Exact parameter counts, 3 input channels, default arguments.
PINNED_PARAMS = {
    ("lenet5", 10): 62_006,
    ("lenet5", 100): 69_656,
    ("mobilenetv2", 10): 2_236_682,
    ("mobilenetv2", 100): 2_351_972,
    ("mobilenetv2_reduced", 10): 1_236_746,
    ("mobilenetv2_reduced", 100): 1_352_036,
    ("resnet34", 10): 21_282_122,
    ("resnet34", 100): 21_328_292,
}

# Non-default arguments per model, to check that cnnbench_spec round-trips them.
NON_DEFAULT_KWARGS = {
    "lenet5": {"activation": "relu", "pool": "max"},
    "mobilenetv2": {"width_mult": 0.5, "strides": "imagenet", "dropout": 0.0},
    "mobilenetv2_reduced": {"width_mult": 0.75, "dropout": 0.1},
    "resnet34": {"stem": "imagenet", "zero_init_residual": True},
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_expected_models_registered() -> None:
    assert ALL_MODELS == ["lenet5", "mobilenetv2", "mobilenetv2_reduced", "resnet34"]
    assert set(NON_DEFAULT_KWARGS) == set(ALL_MODELS)


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", ALL_MODELS)
def test_output_shape_and_finite(name: str, num_classes: int) -> None:
    model = create_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(_batch())
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    assert model.num_classes == num_classes


@pytest.mark.parametrize("name", ALL_MODELS)
def test_backward_gives_finite_grads(name: str) -> None:
    model = create_model(name).train()
    model(_batch()).logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_is_head_of_features(name: str) -> None:
    model = create_model(name).eval()
    x = _batch()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, model.num_features)
        torch.testing.assert_close(model(x), model.head(feats))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_head_is_linear(name: str) -> None:
    model = create_model(name, num_classes=13)
    assert type(model.head) is nn.Linear
    assert model.head.in_features == model.num_features
    assert model.head.out_features == 13


@pytest.mark.parametrize("name", ALL_MODELS)
def test_reset_classifier(name: str) -> None:
    model = create_model(name)
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    model.reset_classifier(7)
    assert model.num_classes == 7
    assert model.cnnbench_spec["num_classes"] == 7
    with torch.no_grad():
        assert model.eval()(_batch()).shape == (2, 7)
    after = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert after.keys() == backbone.keys()
    for k, v in backbone.items():
        assert torch.equal(after[k], v), k
    # The spec follows the reset, so a checkpoint saved now rebuilds with a 7-way head.
    create_model(**model.cnnbench_spec).load_state_dict(model.state_dict())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_freeze_groups_cover_backbone_once(name: str) -> None:
    model = create_model(name)
    groups = model.freeze_groups()
    assert groups and all(isinstance(g, nn.Module) for g in groups)
    seen: list[int] = [id(p) for g in groups for p in g.parameters()]
    assert len(seen) == len(set(seen)), "a parameter is in more than one group"
    head = {id(p) for p in model.head.parameters()}
    backbone = {id(p) for p in model.parameters()} - head
    assert set(seen) == backbone
    assert all(any(True for _ in g.parameters()) for g in groups), "empty group"


@pytest.mark.parametrize("use_kwargs", [False, True])
@pytest.mark.parametrize("name", ALL_MODELS)
def test_spec_rebuilds_same_architecture(name: str, use_kwargs: bool) -> None:
    kwargs = NON_DEFAULT_KWARGS[name] if use_kwargs else {}
    model = create_model(name, num_classes=5, **kwargs)
    assert model.cnnbench_spec == {"name": name, "num_classes": 5, **kwargs}
    rebuilt = create_model(**model.cnnbench_spec)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())  # strict


@pytest.mark.parametrize("key", sorted(PINNED_PARAMS))
def test_pinned_param_counts(key: tuple[str, int]) -> None:
    name, num_classes = key
    assert _count(create_model(name, num_classes=num_classes)) == PINNED_PARAMS[key]


def test_resnet34_imagenet_stem_matches_torchvision() -> None:
    ours = create_model("resnet34", stem="imagenet")
    assert _count(ours) == _count(torchvision.models.resnet34(num_classes=10)) == 21_289_802


def test_mobilenetv2_matches_torchvision() -> None:
    theirs = _count(torchvision.models.mobilenet_v2(num_classes=10))
    for strides in ("cifar", "imagenet"):  # strides must not change the count
        assert _count(create_model("mobilenetv2", strides=strides)) == theirs


def _blocks(model: nn.Module) -> list[InvertedResidual]:
    return [m for m in model.modules() if isinstance(m, InvertedResidual)]


def test_inverted_residual_block_counts() -> None:
    full = _blocks(create_model("mobilenetv2"))
    reduced = _blocks(create_model("mobilenetv2_reduced"))
    assert len(full) == 17
    assert len(reduced) in (10, 11)
    assert len(reduced) == 10
    # Residual only when stride == 1 and inp == oup: one per repeat after the first of a row.
    assert sum(b.use_res_connect for b in full) == 10
    assert sum(b.use_res_connect for b in reduced) == 3


@pytest.mark.parametrize(("strides", "side"), [("cifar", 4), ("imagenet", 1)])
@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv2_reduced"])
def test_mobilenet_strides(name: str, strides: str, side: int) -> None:
    model = create_model(name, strides=strides).eval()
    with torch.no_grad():
        fmap = model.final_conv(model.blocks(model.stem(_batch(1))))
    assert fmap.shape[-2:] == (side, side)


def test_custom_inverted_residual_setting_is_not_mutated() -> None:
    table = [[1, 16, 1, 1], [6, 24, 1, 2], [6, 32, 1, 2]]
    model = create_model("mobilenetv2", inverted_residual_setting=table)
    assert table == [[1, 16, 1, 1], [6, 24, 1, 2], [6, 32, 1, 2]]
    assert len(_blocks(model)) == 3
    with torch.no_grad():
        assert model.eval()(_batch()).shape == (2, 10)
    with pytest.raises(ValueError, match="t, c, n, s"):
        create_model("mobilenetv2", inverted_residual_setting=[[6, 24, 2]])


def test_resnet34_stems_and_zero_init() -> None:
    cifar = create_model("resnet34")
    imagenet = create_model("resnet34", stem="imagenet")
    assert cifar.stem[0].kernel_size == (3, 3) and cifar.stem[0].stride == (1, 1)
    assert imagenet.stem[0].kernel_size == (7, 7) and isinstance(imagenet.stem[-1], nn.MaxPool2d)
    zeroed = create_model("resnet34", zero_init_residual=True)
    assert all(torch.all(b.bn2.weight == 0) for b in zeroed.freeze_groups()[1:])
    with pytest.raises(ValueError, match="stem"):
        create_model("resnet34", stem="tiny")


def test_lenet_variants_differ() -> None:
    classic = create_model("lenet5")
    modern = create_model("lenet5", activation="relu", pool="max")
    kinds = lambda m: {type(x) for x in m.modules()}  # noqa: E731
    assert {nn.Sigmoid, nn.AvgPool2d} <= kinds(classic)
    assert not {nn.ReLU, nn.MaxPool2d} & kinds(classic)
    assert {nn.ReLU, nn.MaxPool2d} <= kinds(modern)
    assert not {nn.Sigmoid, nn.AvgPool2d} & kinds(modern)
    assert _count(classic) == _count(modern)


def test_lenet_input_size() -> None:
    with pytest.raises(ValueError, match="input_size"):
        create_model("lenet5")(torch.zeros(1, 3, 28, 28))
    model = create_model("lenet5", input_size=28).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 28, 28)).shape == (1, 10)


def test_unknown_model_lists_names() -> None:
    with pytest.raises(ValueError, match="unknown model") as info:
        create_model("resnet1000")
    for name in ALL_MODELS:
        assert name in str(info.value)


def test_bad_kwargs_are_clear() -> None:
    with pytest.raises(TypeError, match="width_multiplier"):
        create_model("mobilenetv2", width_multiplier=0.5)
    with pytest.raises(ValueError, match="activation"):
        create_model("lenet5", activation="tanh")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("lenet5", num_classes=0)


def test_duplicate_registration_is_an_error() -> None:
    def lenet5(*, num_classes: int = 10) -> nn.Module:  # same name as the real one
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        register_model(lenet5)
    assert list_models() == ALL_MODELS
    assert type(create_model("lenet5")).__name__ == "LeNet5"


def test_list_models_pattern() -> None:
    assert list_models("mobilenet*") == ["mobilenetv2", "mobilenetv2_reduced"]
    assert list_models("resnet*") == ["resnet34"]
    assert list_models("nothing*") == []
