"""Every registered model is tested by the same parametrised tests (timm's pattern), plus
pinned parameter counts and a few architecture-specific checks."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from cnnbench.models import create_model, list_models, register_model
from cnnbench.models.mobilenetv2 import InvertedResidual
from cnnbench.profile import count_macs

ALL_MODELS = list_models()

# Exact parameter counts, 3 input channels, default arguments.
PINNED_PARAMS = {
    # FastNet's 288 whitening-filter numbers are a buffer, not counted.
    ("fastnet", 10): 1_972_514,
    ("fastnet", 100): 1_995_644,
    ("fastnet_16_64_128", 10): 275_170,
    ("fastnet_16_64_128", 100): 286_780,
    ("fastnet_24_96", 10): 281_794,
    ("fastnet_24_96", 100): 290_524,
    ("fastnet_40_160", 10): 774_914,
    ("fastnet_40_160", 100): 789_404,
    ("fastnet_base", 10): 1_972_514,
    ("fastnet_base", 100): 1_995_644,
    ("fastnet_large", 10): 4_606_242,
    ("fastnet_large", 100): 4_640_892,
    ("fastnet_medium", 10): 1_113_058,
    ("fastnet_medium", 100): 1_130_428,
    ("fastnet_small", 10): 497_826,
    ("fastnet_small", 100): 509_436,
    ("fastnet_tiny", 10): 126_818,
    ("fastnet_tiny", 100): 132_668,
    ("lenet5", 10): 62_006,
    ("lenet5", 100): 69_656,
    ("lenet5_relu", 10): 62_006,
    ("lenet5_relu", 100): 69_656,
    ("mobilenetv2", 10): 2_236_682,
    ("mobilenetv2", 100): 2_351_972,
    ("mobilenetv2_reduced", 10): 1_236_746,
    ("mobilenetv2_reduced", 100): 1_352_036,
    ("mobilenetv2_x0_5", 10): 700_490,  # CIFAR zoos: 0.70 M
    ("mobilenetv2_x0_5", 100): 815_780,
    ("mobilenetv2_x0_75", 10): 1_368_234,  # CIFAR zoos: 1.37 M
    ("mobilenetv2_x0_75", 100): 1_483_524,
    ("resnet20", 10): 272_474,  # option-B shortcuts; option A: 269,722
    ("resnet20", 100): 278_324,
    ("resnet34", 10): 21_282_122,
    ("resnet34", 100): 21_328_292,
    ("resnet8", 10): 77_946,  # MLPerf Tiny reference: 78,186 (+240 redundant conv biases)
    ("resnet8", 100): 83_796,
    ("resnet_cifar", 10): 272_474,  # depth=20 by default
    ("resnet_cifar", 100): 278_324,
}

# Exact MACs of one 3x32x32 image, 10 classes, default arguments (cnnbench.profile.count_macs).
PINNED_MACS = {
    "fastnet_16_64_128": 12_937_376,
    "fastnet_24_96": 19_966_560,
    "fastnet_40_160": 49_434_208,
    "fastnet_base": 118_147_360,
    "fastnet_large": 301_560_864,
    "fastnet_medium": 69_070_368,
    "fastnet_small": 33_066_272,
    "fastnet_tiny": 10_135_072,
    "mobilenetv2": 87_976_448,
    "mobilenetv2_x0_5": 27_969_024,  # CIFAR zoos: 27.97 M
    "mobilenetv2_x0_75": 59_310_080,  # CIFAR zoos: 59.31 M
    "resnet20": 40_813_184,
    "resnet8": 12_501_632,
}

# Non-default arguments per model, to check that cnnbench_spec round-trips them.
NON_DEFAULT_KWARGS = {
    "fastnet": {"widths": [16, 32, 64], "dirac": False},
    "fastnet_16_64_128": {"dirac": False},
    "fastnet_24_96": {"dirac": False},
    "fastnet_40_160": {"dirac": False},
    "fastnet_base": {"dirac": False},
    "fastnet_large": {"dirac": False},
    "fastnet_medium": {"dirac": False},
    "fastnet_small": {"dirac": False},
    "fastnet_tiny": {"dirac": False},
    "lenet5": {"activation": "relu", "pool": "max"},
    "lenet5_relu": {"input_size": 28},
    "mobilenetv2": {"width_mult": 0.5, "strides": "imagenet", "dropout": 0.0},
    "mobilenetv2_reduced": {"width_mult": 0.75, "dropout": 0.1},
    "mobilenetv2_x0_5": {"strides": "imagenet", "dropout": 0.0},
    "mobilenetv2_x0_75": {"dropout": 0.1},
    "resnet20": {"zero_init_residual": True},
    "resnet34": {"stem": "imagenet", "zero_init_residual": True},
    "resnet8": {"zero_init_residual": True},
    "resnet_cifar": {"depth": 32, "zero_init_residual": True},
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_expected_models_registered() -> None:
    assert ALL_MODELS == [
        "fastnet",
        "fastnet_16_64_128",
        "fastnet_24_96",
        "fastnet_40_160",
        "fastnet_base",
        "fastnet_large",
        "fastnet_medium",
        "fastnet_small",
        "fastnet_tiny",
        "lenet5",
        "lenet5_relu",
        "mobilenetv2",
        "mobilenetv2_reduced",
        "mobilenetv2_x0_5",
        "mobilenetv2_x0_75",
        "resnet20",
        "resnet34",
        "resnet8",
        "resnet_cifar",
    ]
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


def test_every_model_has_pinned_params() -> None:
    assert {name for name, _ in PINNED_PARAMS} == set(ALL_MODELS)


@pytest.mark.parametrize("name", sorted(PINNED_MACS))
def test_pinned_macs(name: str) -> None:
    assert count_macs(create_model(name)) == PINNED_MACS[name]


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
    assert list_models("mobilenet*") == [
        "mobilenetv2",
        "mobilenetv2_reduced",
        "mobilenetv2_x0_5",
        "mobilenetv2_x0_75",
    ]
    assert list_models("resnet*") == ["resnet20", "resnet34", "resnet8", "resnet_cifar"]
    assert list_models("nothing*") == []


def _convs(model: nn.Module, k: int) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (k, k)]


def _stage_sides(model: nn.Module) -> list[int]:
    x, sides = model.stem(_batch(1)), []
    for stage in model.freeze_groups()[1:]:
        x = stage(x)
        sides.append(x.shape[-1])
    return sides


def test_resnet20_architecture() -> None:
    model = create_model("resnet20").eval()
    # 6n + 2 weighted layers with n = 3: the stem, 18 block convs (all 3x3) and the head.
    assert len(_convs(model, 3)) == 19
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 1
    assert [len(stage) for stage in model.freeze_groups()[1:]] == [3, 3, 3]
    # Option B: exactly the two shape-changing shortcuts are 1x1 conv + BN; the rest identity.
    shortcuts = [b.downsample for s in model.freeze_groups()[1:] for b in s]
    assert [d is not None for d in shortcuts] == [False] * 3 + [True, False, False] * 2
    assert all(isinstance(d[1], nn.BatchNorm2d) for d in shortcuts if d is not None)
    assert [c.out_channels for c in _convs(model, 1)] == [32, 64]
    with torch.no_grad():
        assert _stage_sides(model) == [32, 16, 8]
    assert model.num_features == 64 and len(model.freeze_groups()) == 4


def test_resnet8_is_the_mlperf_tiny_reference() -> None:
    model = create_model("resnet8").eval()
    assert len(_convs(model, 3)) == 7  # stem + 3 blocks x 2: with the head, 8 weighted layers
    assert [len(stage) for stage in model.freeze_groups()[1:]] == [1, 1, 1]
    shortcuts = [b.downsample for s in model.freeze_groups()[1:] for b in s]
    assert shortcuts[0] is None
    # The reference's shortcut is a bare 1x1 stride-2 conv with a bias, no BN.
    for d, width in zip(shortcuts[1:], (32, 64), strict=True):
        assert type(d) is nn.Conv2d and d.bias is not None
        assert d.kernel_size == (1, 1) and d.stride == (2, 2) and d.out_channels == width
    assert all(c.bias is None for c in _convs(model, 3))  # BN follows every 3x3 conv
    with torch.no_grad():
        assert _stage_sides(model) == [32, 16, 8]


def test_resnet_cifar_depths_and_zero_init() -> None:
    for depth, n in ((8, 1), (20, 3), (56, 9)):
        model = create_model("resnet_cifar", depth=depth)
        assert [len(stage) for stage in model.freeze_groups()[1:]] == [n, n, n]
        assert len(_convs(model, 3)) == depth - 1
    assert _count(create_model("resnet_cifar", depth=56)) == 855_770  # CIFAR zoos: 0.86 M
    for bad in (7, 21, 2, 20.0, True):
        with pytest.raises(ValueError, match="6n\\+2"):
            create_model("resnet_cifar", depth=bad)
    for name in ("resnet20", "resnet8"):
        zeroed = create_model(name, zero_init_residual=True)
        blocks = [b for s in zeroed.freeze_groups()[1:] for b in s]
        assert all(torch.all(b.bn2.weight == 0) for b in blocks)
        assert not torch.all(zeroed.stem[1].weight == 0)


@pytest.mark.parametrize(
    ("name", "width"), [("mobilenetv2_x0_5", 0.5), ("mobilenetv2_x0_75", 0.75)]
)
def test_mobilenetv2_width_variants_are_the_base_model(name: str, width: float) -> None:
    variant = create_model(name)
    base = create_model("mobilenetv2", width_mult=width)
    shapes = {k: v.shape for k, v in base.state_dict().items()}
    assert {k: v.shape for k, v in variant.state_dict().items()} == shapes
    assert variant.num_features == 1280  # the last conv never narrows below 1280
    with torch.no_grad():  # CIFAR strides by default: 32x32 -> 4x4 before pooling
        fmap = variant.final_conv(variant.blocks(variant.stem(_batch(1))))
    assert fmap.shape[-2:] == (4, 4)


def _whitening_images(seed: int) -> torch.Tensor:
    """Random images with correlated pixels and channels, so whitening has work to do."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, 16, 16, generator=g)
    x = x + 0.8 * x.roll(1, dims=-1) + 0.5 * x.roll(1, dims=-2)
    mix = torch.tensor([[1.0, 0.6, 0.3], [0.0, 1.0, 0.6], [0.0, 0.0, 0.5]])
    return torch.einsum("dc,nchw->ndhw", mix, x) + 0.3


def test_fastnet_whitening_from_data() -> None:
    model = create_model("fastnet_tiny")
    assert "stem.weight" in dict(model.named_buffers())
    assert "stem.weight" not in dict(model.named_parameters())
    images = _whitening_images(0)
    before = model.stem.weight.clone()
    model.init_from_data(images)
    w = model.stem.weight
    assert w.shape == (24, 3, 2, 2) and not torch.equal(w, before)
    half = w.shape[0] // 2
    torch.testing.assert_close(w[half:], -w[:half])  # each filter and its negative

    # The stem's linear part (conv with the filters, before bias and GELU) on the fitting
    # images: covariance over all 2x2 patches is ~identity (eps shrinks it very slightly).
    out = F.conv2d(images.double(), w[:half].double())
    feats = out.permute(0, 2, 3, 1).reshape(-1, half)
    feats = feats - feats.mean(0)
    cov = feats.T @ feats / len(feats)
    torch.testing.assert_close(cov, torch.eye(half, dtype=cov.dtype), atol=1e-2, rtol=0)
    # Without whitening the patch covariance is far from the identity.
    raw = F.unfold(images.double(), 2).transpose(1, 2).reshape(-1, 12)
    raw = raw - raw.mean(0)
    assert (raw.T @ raw / len(raw) - torch.eye(12, dtype=raw.dtype)).abs().max() > 0.5

    # The filters depend only on the images given: not on the model's width, its random
    # init, or what it was fitted on before.
    torch.manual_seed(123)
    other = create_model("fastnet_small")
    other.init_from_data(_whitening_images(1))
    assert not torch.allclose(other.stem.weight, w)
    other.init_from_data(images)
    torch.testing.assert_close(other.stem.weight, w, atol=1e-6, rtol=0)
