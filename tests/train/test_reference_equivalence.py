"""cnnbench's fast training loop computes the same thing as the common torchvision loop.

The reference is the one ``benchmarks/train_throughput.py`` times (a CIFAR10-style dataset of
PIL images, torchvision transforms, a DataLoader, the pytorch-cifar training loop), so these
tests also say that the benchmark compares like with like: same inputs, same augmentation for
the same draws, same losses step by step. Behaviour only; nothing here reads a clock.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from cnnbench.data import Augment, BatchIterator, normalize
from cnnbench.models import create_model
from cnnbench.train.config import RunConfig
from cnnbench.train.loop import train_one_epoch
from cnnbench.train.optim import build_optimizer

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # rounded published values: any mean/std will do
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
LR = 0.002  # per 16-image batch: small, so that 5 steps stay smooth (BN on 16 images amplifies)
# BN + depthwise convs, made small (a quarter width, stride-2 stem) to run in seconds; dropout
# off because the reference DataLoader draws its base seed from the global RNG.
SMALL_MNV2 = {"dropout": 0.0, "width_mult": 0.25, "strides": "imagenet"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the results do not depend on it, and 2-core CI machines are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    """96 uint8 images (N, 3, 32, 32) with structure (a gradient plus noise) and labels."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 160, 32)
    base = ramp[None, None, :, None] + ramp[None, None, None, :] * 0.5
    noise = torch.randint(0, 96, (96, 3, 32, 32), generator=g)
    x = (base + noise).clamp(0, 255).to(torch.uint8)
    return x, torch.randint(0, 10, (96,), generator=g)


def _pil_tensors(bench, x: torch.Tensor, transform) -> torch.Tensor:
    ds = bench.PILCifar(x, torch.zeros(len(x), dtype=torch.long), transform)
    return torch.stack([ds[i][0] for i in range(len(ds))])


def test_normalised_inputs_equal(bench, images):
    """ToTensor + Normalize on PIL images == cnnbench's normalize on the uint8 tensor."""
    x, _ = images
    ref = _pil_tensors(
        bench, x, bench.reference_transform(CIFAR10_MEAN, CIFAR10_STD, augment=False)
    )
    ours = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    assert ours.dtype == ref.dtype == torch.float32 and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-6)
    cl = normalize(x, CIFAR10_MEAN, CIFAR10_STD, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, ref, rtol=0, atol=2e-6)


def test_normalised_inputs_equal_on_cifar10(bench, cifar10):
    """The same on real CIFAR-10 images with the dataset's own mean/std (as the benchmark)."""
    x = cifar10.x_train[:256]
    mean, std = cifar10.mean_std()
    ref = _pil_tensors(bench, x, bench.reference_transform(mean, std, augment=False))
    torch.testing.assert_close(normalize(x, mean, std), ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize(("mode", "pil_mode"), [("zeros", "constant"), ("reflect", "reflect")])
def test_same_crop_and_flip_draws_give_same_images(images, mode, pil_mode):
    """Augment.apply == torchvision pad + crop + hflip on PIL images, for injected draws.

    ``RandomCrop(32, padding=4)`` pads with zeros (``padding_mode="constant"``); cnnbench's
    default is reflect. Both are checked, each against its torchvision counterpart.
    """
    from PIL import Image
    from torchvision.transforms import functional as TF

    x, _ = images
    g = torch.Generator().manual_seed(1)
    params = Augment(crop_padding=4).sample(len(x), g)
    ours = Augment(crop_padding=4, padding_mode=mode).apply(x, params)
    ref = []
    for i in range(len(x)):
        img = Image.fromarray(x[i].permute(1, 2, 0).numpy())
        img = TF.pad(img, 4, fill=0, padding_mode=pil_mode)
        img = TF.crop(img, int(params.dy[i]), int(params.dx[i]), 32, 32)
        if params.flip[i]:
            img = TF.hflip(img)
        ref.append(TF.pil_to_tensor(img))
    assert torch.equal(ours, torch.stack(ref))


def _cnnbench_losses(model, x, y, batch_size, steps, channels_last) -> list[float]:
    """Per-step losses of train_one_epoch fed by BatchIterator (one call per batch)."""
    config = RunConfig(model="lenet5", optimizer="sgd", lr=LR, momentum=0.9, weight_decay=0.0)
    optimizer = build_optimizer(model, config)
    it = iter(
        BatchIterator(x, y, batch_size, shuffle=False, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                      channels_last=channels_last)
    )  # fmt: skip
    loss_fn = nn.CrossEntropyLoss()
    cpu = torch.device("cpu")
    return [
        train_one_epoch(model, [batch], optimizer, None, loss_fn, device=cpu)["train_loss"]
        for batch in itertools.islice(it, steps)
    ]


def _reference_losses(bench, model, x, y, batch_size, steps, transform=None) -> list[float]:
    if transform is None:
        transform = bench.reference_transform(CIFAR10_MEAN, CIFAR10_STD, augment=False)
    loader = DataLoader(bench.PILCifar(x, y, transform), batch_size=batch_size, shuffle=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    return bench.reference_train_steps(
        model, iter(loader), optimizer, nn.CrossEntropyLoss(), torch.device("cpu"), steps
    )


def _same_floats_as_ours(img) -> torch.Tensor:
    """A reference transform that yields exactly the floats cnnbench's normalize yields."""
    from torchvision.transforms import functional as TF

    return normalize(TF.pil_to_tensor(img)[None], CIFAR10_MEAN, CIFAR10_STD)[0]


def _compare_loops(bench, x, y, name, kwargs, channels_last, batch_size, steps, atol,
                   transform=None):  # fmt: skip
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    ref_model = copy.deepcopy(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        if transform is not None:  # same inputs: then the same kernels too
            ref_model = ref_model.to(memory_format=torch.channels_last)
    ours = _cnnbench_losses(model, x, y, batch_size, steps, channels_last)
    ref = _reference_losses(bench, ref_model, x, y, batch_size, steps, transform)
    assert len(ours) == len(ref) == steps
    assert ours[0] != ours[-1]  # the weights did move
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), rtol=0, atol=atol)


@pytest.mark.parametrize(
    ("kwargs", "channels_last"),
    [({}, False), ({"activation": "relu", "pool": "max"}, True)],
)
def test_same_losses_for_five_sgd_steps_lenet5(bench, images, kwargs, channels_last):
    """Augmentation off, same weights and batch order, SGD: the loops' losses agree."""
    x, y = images
    _compare_loops(bench, x, y, "lenet5", kwargs, channels_last, 16, steps=5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_same_losses_mobilenetv2_reduced(bench, cifar10, channels_last):
    """The same with BatchNorm and depthwise convs, on real CIFAR-10 images.

    This net is chaotic at these settings: the two pipelines' inputs differ by float rounding
    (about 1e-7, tested above), and batch statistics of near-constant channels amplify that
    about a thousandfold a step (on an AMD EPYC, 2e-7 -> 4e-4 -> 3e-2 over steps 2-4; a Xeon
    stayed under 2e-5). So here the reference DataLoader is handed exactly the floats that
    cnnbench normalises to, and the two loops must then agree on every step.
    """
    idx = torch.randperm(len(cifar10.y_train), generator=torch.Generator().manual_seed(0))[:128]
    x, y = cifar10.x_train[idx], cifar10.y_train[idx]
    _compare_loops(bench, x, y, "mobilenetv2_reduced", SMALL_MNV2, channels_last, 32, 4,
                   atol=1e-6, transform=_same_floats_as_ours)  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_path_matches_cpu_augmentation_and_trains(images):
    """GPU path: uint8 data and the generator on the GPU, augmentation there, bf16 +
    channels_last; the augmented batch equals the CPU one for the same draws."""
    x, y = images
    cuda = torch.device("cuda")
    aug = Augment(crop_padding=4)
    params = aug.sample(len(x), torch.Generator().manual_seed(2))
    torch.testing.assert_close(aug.apply(x.to(cuda), params.to(cuda)).cpu(), aug.apply(x, params))

    gen = torch.Generator(device=cuda).manual_seed(0)
    batches = BatchIterator(x.to(cuda), y.to(cuda), 32, shuffle=True, augment=aug,
                            mean=CIFAR10_MEAN, std=CIFAR10_STD, generator=gen,
                            channels_last=True)  # fmt: skip
    xb, yb = next(iter(batches))
    assert xb.is_cuda and yb.is_cuda and xb.is_contiguous(memory_format=torch.channels_last)
    model = create_model("lenet5").to(cuda).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    stats = train_one_epoch(model, batches, optimizer, None, nn.CrossEntropyLoss(), device=cuda,
                            amp_dtype=torch.bfloat16)  # fmt: skip
    assert torch.isfinite(torch.tensor(stats["train_loss"]))
