"""Batched augmentation on uint8 tensors, normalisation, and the batch iterator.

No per-image Python anywhere: a random crop with padding plus a horizontal flip is two
`gather`s with per-image index rows (the padding is never materialised), and batches are
index tensors into the whole dataset. Every random number comes from the `torch.Generator`
passed in, so a trainer that saves and restores that generator reproduces an epoch exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

__all__ = ["Augment", "AugmentParams", "BatchIterator", "Cutout", "Degrade", "normalize"]

_PADDING_MODES = ("reflect", "zeros")


@dataclass(frozen=True)
class AugmentParams:
    """Per-image draws: crop offsets into the padded image, in [0, 2 * padding], and flips."""

    dy: torch.Tensor  # int64 (B,)
    dx: torch.Tensor  # int64 (B,)
    flip: torch.Tensor  # bool (B,)

    def __getitem__(self, s: slice | torch.Tensor) -> AugmentParams:
        return AugmentParams(self.dy[s], self.dx[s], self.flip[s])

    def to(self, device: torch.device | str | None) -> AugmentParams:
        return AugmentParams(
            self.dy.to(device, non_blocking=True),
            self.dx.to(device, non_blocking=True),
            self.flip.to(device, non_blocking=True),
        )


def _source_index(
    size: int, offset: torch.Tensor, padding: int, mode: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Source row (or column) of each output position, (B, size), and the in-range mask.

    Output position i of image b reads padded position i + offset[b], i.e. source position
    i + offset[b] - padding, folded back into range by reflection (`reflect`, as `F.pad`) or
    marked out of range (`zeros`).
    """
    pos = torch.arange(size, device=offset.device) + (offset[:, None] - padding)
    if mode == "reflect":
        pos = pos.abs()
        return torch.where(pos > size - 1, 2 * (size - 1) - pos, pos), None
    inside = (pos >= 0) & (pos < size)
    return pos.clamp(0, size - 1), inside


class Augment:
    """Random crop after padding by `crop_padding` pixels, then a random horizontal flip.

    Called on a uint8 (B, C, H, W) batch with a generator, it returns a new uint8 batch of
    the same shape, on the same device (CPU or CUDA). With `crop_padding=0` and
    `flip=False` it returns the input itself.
    """

    def __init__(
        self, crop_padding: int = 4, flip: bool = True, padding_mode: str = "reflect"
    ) -> None:
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.crop_padding = crop_padding
        self.flip = flip
        self.padding_mode = padding_mode

    def __repr__(self) -> str:
        return (
            f"Augment(crop_padding={self.crop_padding}, flip={self.flip}, "
            f"padding_mode={self.padding_mode!r})"
        )

    @property
    def is_identity(self) -> bool:
        return self.crop_padding == 0 and not self.flip

    def sample(self, n: int, generator: torch.Generator | None) -> AugmentParams:
        """Draw the parameters of `n` images, on the generator's device; always 3 draws."""
        device = generator.device if generator is not None else torch.device("cpu")
        kw = {"generator": generator, "device": device}
        dy = torch.randint(0, 2 * self.crop_padding + 1, (n,), **kw)
        dx = torch.randint(0, 2 * self.crop_padding + 1, (n,), **kw)
        flip = torch.randint(0, 2, (n,), **kw).bool() & self.flip
        return AugmentParams(dy, dx, flip)

    def apply(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment `x` with given parameters (see `sample`)."""
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if self.is_identity:
            return x
        b, c, h, w = x.shape
        p = self.crop_padding
        if self.padding_mode == "reflect" and p >= min(h, w):
            raise ValueError(f"reflect padding {p} needs images larger than {p}, got {h}x{w}")
        params = params.to(x.device)
        rows, row_ok = _source_index(h, params.dy, p, self.padding_mode)
        # a flip reverses the crop's columns: output column j reads crop column w - 1 - j
        j = torch.arange(w, device=x.device)
        j = torch.where(params.flip[:, None], w - 1 - j, j)
        cols, col_ok = _source_index(w, params.dx, p, self.padding_mode)
        cols = cols.gather(1, j)
        out = x.gather(2, rows[:, None, :, None].expand(b, c, h, w))
        out = out.gather(3, cols[:, None, None, :].expand(b, c, h, w))
        if row_ok is not None and col_ok is not None:
            col_ok = col_ok.gather(1, j)
            keep = row_ok[:, None, :, None] & col_ok[:, None, None, :]
            out = out * keep  # uint8 * bool stays uint8: zero padding
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.sample(len(x), generator))


def _affine(
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), (1, C, 1, 1) float32, so that normalised = uint8 * scale + shift."""
    m = torch.as_tensor(mean, dtype=torch.float64).flatten()
    s = torch.as_tensor(std, dtype=torch.float64).flatten()
    if (s <= 0).any():
        raise ValueError(f"std must be positive, got {s.tolist()}")
    scale = (1.0 / (255.0 * s)).float().view(1, -1, 1, 1).to(device)
    shift = (-m / s).float().view(1, -1, 1, 1).to(device)
    return scale, shift


def _apply_affine(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    dtype: torch.dtype,
    channels_last: bool,
) -> torch.Tensor:
    if x.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 batch, got {x.dtype}")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = torch.addcmul(shift, x.float(), scale)  # float32 math, whatever the final dtype
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    return out if dtype == torch.float32 else out.to(dtype)


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """`(x / 255 - mean) / std` per channel, for a uint8 (B, C, H, W) batch; mean/std in [0, 1].

    Computed in float32, then cast to `dtype`; `channels_last` returns that memory format.
    """
    scale, shift = _affine(mean, std, x.device)
    return _apply_affine(x, scale, shift, dtype, channels_last)


class Cutout:
    """Cutout (DeVries & Taylor 2017): a ``size`` x ``size`` square of every image set to 0.

    It runs on the normalised batch, so 0 is the dataset's mean colour, as in the paper.
    Each square's centre is uniform over the image and the square is clipped at the border
    (so near an edge less is cut), one square per image and pass. ``sample`` draws the
    centres of a whole pass at once; ``apply`` masks a batch with its rows of them: one
    broadcast comparison per batch, no per-image Python.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"cutout size must be >= 1 pixel, got {size}")
        self.size = size

    def __repr__(self) -> str:
        return f"Cutout({self.size})"

    def sample(self, n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 2) int64 centres (row, column), on the generator's device."""
        kw = {"generator": generator, "device": generator.device}
        return torch.stack([torch.randint(0, height, (n,), **kw),
                            torch.randint(0, width, (n,), **kw)], 1)  # fmt: skip

    def mask(self, centres: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, 1, H, W) bool: True inside each image's square."""
        lo = centres.to(torch.int64) - self.size // 2  # (B, 2): top and left edges
        rows = torch.arange(height, device=centres.device)[None]
        cols = torch.arange(width, device=centres.device)[None]
        in_r = (rows >= lo[:, :1]) & (rows < lo[:, :1] + self.size)
        in_c = (cols >= lo[:, 1:]) & (cols < lo[:, 1:] + self.size)
        return in_r[:, None, :, None] & in_c[:, None, None, :]

    def apply(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Zero each image's square in a normalised (B, C, H, W) batch (a new tensor)."""
        if x.ndim != 4 or len(centres) != len(x):
            raise ValueError(f"expected a (B, C, H, W) batch and B centres, got "
                             f"{tuple(x.shape)} and {tuple(centres.shape)}")  # fmt: skip
        return x.masked_fill(self.mask(centres.to(x.device), x.shape[2], x.shape[3]), 0)


class Degrade:
    """What a camera does to a frame, as training augmentation: Gaussian noise and blur.

    Each image of a batch is, with probability ``p`` each and independently, blurred by a
    Gaussian of standard deviation ~ U(0.3, ``blur_sigma``) pixels (a depthwise 5x5
    convolution, one kernel per image: one ``conv2d`` call for the batch) and then given
    additive Gaussian noise of standard deviation ~ U(0, ``noise_std``) in [0, 1] pixel units
    (CIFAR-10-C's Gaussian-noise severities are 0.04-0.10). It works on the normalised float
    batch, so ``std`` (the normalisation's, per channel) converts the noise to that scale.
    Gaussian-noise training is the simple baseline of Rusak et al. (ECCV 2020) for corruption
    robustness. ``kinds`` picks "noise", "blur" or both.
    """

    KINDS = ("noise", "blur", "noise-blur")

    def __init__(
        self, kinds: str, *, p: float = 0.5, noise_std: float = 0.1, blur_sigma: float = 1.5
    ) -> None:
        if kinds not in self.KINDS:
            raise ValueError(f"kinds must be one of {self.KINDS}, got {kinds!r}")
        if not 0.0 < p <= 1.0 or noise_std <= 0 or blur_sigma <= 0.3:
            raise ValueError(f"need 0 < p <= 1, noise_std > 0, blur_sigma > 0.3; got "
                             f"{p}, {noise_std}, {blur_sigma}")  # fmt: skip
        self.noise = "noise" in kinds
        self.blur = "blur" in kinds
        self.p, self.noise_std, self.blur_sigma = p, noise_std, blur_sigma

    def __repr__(self) -> str:
        kinds = "noise-blur" if self.noise and self.blur else ("noise" if self.noise else "blur")
        return f"Degrade({kinds!r}, p={self.p}, noise_std={self.noise_std}, " \
               f"blur_sigma={self.blur_sigma})"  # fmt: skip

    def _blur(self, x: torch.Tensor, which: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        sigma = (0.3 + (self.blur_sigma - 0.3) * torch.rand(b, generator=g)).to(x.device)
        taps = torch.arange(-2, 3, device=x.device, dtype=torch.float32)
        k1 = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
        k1 = k1 / k1.sum(1, keepdim=True)
        identity = (taps == 0).float().expand(b, 5)
        k1 = torch.where(which.to(x.device)[:, None], k1, identity)  # unchosen images: as is
        kernel = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]
        padded = torch.nn.functional.pad(x.reshape(1, b * c, h, w).float(), (2, 2, 2, 2),
                                         mode="reflect")  # fmt: skip
        out = torch.nn.functional.conv2d(padded, kernel, groups=b * c)
        return out.reshape(b, c, h, w).to(x.dtype)

    def __call__(
        self, x: torch.Tensor, std: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Degrade a normalised (B, C, H, W) float batch; every draw comes from ``generator``
        (a CPU generator), so a seeded generator reproduces the batch exactly."""
        b = x.shape[0]
        if self.blur:
            which = torch.rand(b, generator=generator) < self.p
            if bool(which.any()):
                x = self._blur(x, which, generator)
        if self.noise:
            which = torch.rand(b, generator=generator) < self.p
            level = self.noise_std * torch.rand(b, generator=generator) * which
            noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            scale = level.to(x.device)[:, None] / std.reshape(1, -1).to(x.device)
            x = x + noise * scale[:, :, None, None].to(x.dtype)
        return x


class BatchIterator:
    """Yields `(x, y)` batches of a uint8 image tensor: normalised float `x`, int64 `y`.

    Each pass (`iter`) draws, at its start and from `generator` only, the order (if
    `shuffle`) and the augmentation parameters of the whole epoch, so the generator's state
    before a pass fixes that pass, and after it the generator has moved by the same amount
    however many batches were consumed. Batches are gathered with index tensors on `x`'s
    device, then moved to `device` (uint8, before augmenting: 4x less traffic than float),
    augmented and normalised there. For speed on a GPU, put `x` and `y` there first.

    `indices` restricts the pass to those samples (e.g. the train part of a split).
    `flips` (bool, one per image of `x`) replaces the random flips of the pass: a trainer
    alternates them over epochs with it.
    `cutout` (a :class:`Cutout`) zeroes a square of each normalised image; its centres come
    from a generator seeded once per pass from `generator` (after `degrade`'s seed), drawn
    for the whole pass in order, so shards and resumes see the same squares.
    `degrade` (a :class:`Degrade`) adds camera noise/blur to the normalised batch; its draws
    come from a generator seeded once per pass from `generator`, so resumes stay exact.
    `soft` (one row per image of `x`, e.g. a teacher's log-probabilities for distillation)
    is gathered in the same order as `y` and yielded third: `(x, y, soft)` batches.
    `shard=(rank, world)` keeps every `world`-th image of each batch, starting at `rank`:
    the ranks of a data-parallel job draw the same order and augmentation, and together
    see exactly the batches a single process would (see `cnnbench.train.distributed`).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        mean: Sequence[float] | torch.Tensor,
        std: Sequence[float] | torch.Tensor,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        indices: torch.Tensor | None = None,
        shard: tuple[int, int] | None = None,
        flips: torch.Tensor | None = None,
        degrade: Degrade | None = None,
        soft: torch.Tensor | None = None,
        cutout: Cutout | None = None,
    ) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ValueError(f"x must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        needs_rng = (
            shuffle
            or degrade is not None
            or cutout is not None
            or (augment is not None and not augment.is_identity)
        )
        if needs_rng and generator is None:
            raise ValueError(
                "shuffle/augment need a torch.Generator (all randomness comes from it)"
            )
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment if augment is not None and not augment.is_identity else None
        self.generator = generator
        self.drop_last = drop_last
        self.device = torch.device(device) if device is not None else x.device
        self.channels_last = channels_last
        self.dtype = dtype
        self.indices = indices.to(torch.int64).cpu() if indices is not None else None
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        self.shard = shard
        if flips is not None and (flips.dtype != torch.bool or len(flips) != len(x)):
            raise ValueError("flips must be a bool tensor with one entry per image of x")
        self.flips = flips.cpu() if flips is not None else None
        if soft is not None and len(soft) != len(x):
            raise ValueError(f"soft has {len(soft)} rows but x has {len(x)} images")
        self.soft = soft
        self._scale, self._shift = _affine(mean, std, self.device)
        self.degrade = degrade
        self.cutout = cutout
        self._std = torch.as_tensor(std, dtype=torch.float32)

    @property
    def num_samples(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.x)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch_order(self) -> tuple[torch.Tensor, AugmentParams | None]:
        """Draw one epoch's sample order and augmentation parameters from the generator."""
        n = self.num_samples
        g = self.generator
        if self.shuffle:
            assert g is not None
            order = torch.randperm(n, generator=g, device=g.device)
        else:
            order = torch.arange(n)
        if self.indices is not None:
            order = self.indices.to(order.device)[order]
        params = self.augment.sample(n, g) if self.augment is not None else None
        if params is not None and self.flips is not None and self.augment.flip:
            # Flips decided by the caller per image (e.g. alternating over epochs).
            params = AugmentParams(params.dy, params.dx, self.flips[order.cpu()].to(params.flip))
        return order, params

    def _pass_generator(self) -> torch.Generator:
        """A CPU generator for one pass, seeded by one draw from ``generator``."""
        assert self.generator is not None
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        return torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order, params = self.epoch_order()
        degrade_gen = self._pass_generator() if self.degrade is not None else None
        centres = None
        if self.cutout is not None:
            h, w = self.x.shape[2:]
            centres = self.cutout.sample(len(order), h, w, self._pass_generator())
            centres = centres.to(self.device)
        order = order.to(self.x.device)
        y_order = order.to(self.y.device)
        if params is not None:
            params = params.to(self.device)
        bs = self.batch_size
        for i in range(len(self)):
            s = slice(i * bs, (i + 1) * bs)
            if self.shard is not None:
                rank, world = self.shard
                s = torch.arange(i * bs + rank, min((i + 1) * bs, len(order)), world)
            xb = self.x.index_select(0, order[s]).to(self.device, non_blocking=True)
            yb = self.y.index_select(0, y_order[s]).to(self.device, non_blocking=True)
            if self.augment is not None and params is not None:
                xb = self.augment.apply(xb, params[s])
            xb = _apply_affine(xb, self._scale, self._shift, self.dtype, self.channels_last)
            if centres is not None:
                xb = self.cutout.apply(xb, centres[s])
            if degrade_gen is not None:
                xb = self.degrade(xb, self._std, degrade_gen)
            if self.soft is not None:
                sb = self.soft.index_select(0, y_order[s].to(self.soft.device))
                yield xb, yb, sb.to(self.device, non_blocking=True)
            else:
                yield xb, yb
