"""The corruption protocol's names and numbers, importable without numpy or torch.

CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR 2019): 15 corruptions in four groups, five
severities each, applied to the test split. A model is scored by its mean corruption
accuracy (mCA, the mean over the 75 corruption x severity cells) and by the relative drop
from its clean accuracy on the same images, ``(clean - mCA) / clean``.
"""

from __future__ import annotations

# The file a measurement writes into a run directory, and the folder of its two figures.
# (Named in cnnbench.rundir, the one place that names run files.)
from cnnbench.rundir import ROBUSTNESS, ROBUSTNESS_FIGURES  # noqa: F401 (the names live there)

FORMAT = 1  # of robustness.json
# Bump when a corruption's output changes for the same seed: it is part of every cache key
# and of robustness.json, so old cached images and old results are never mixed with new.
IMPLEMENTATION = "cnnbench-cifar-c/1"

GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog"),
    "digital": ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS: tuple[str, ...] = tuple(c for names in GROUPS.values() for c in names)
GROUP_OF: dict[str, str] = {c: g for g, names in GROUPS.items() for c in names}
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# The default protocol measures a seeded, class-stratified subset of the test split (every
# corruption and severity on the same images). 1,000 images = 76,000 forward passes (clean +
# 75 cells) and ~20 s of generation on one core (cold cache); fastnet_small (33 M MACs) took
# 5.4 min cold / 4.2 min warm on 2 cores shared with a training run (load 4.5-7.5, nice 15),
# so well under 5 min on a quiet machine. The standard error of mCA is then ~0.7 points.
# `images=None` (`--full`) takes the whole test split.
DEFAULT_IMAGES = 1000
DEFAULT_SEED = 0


def check_selection(
    corruptions: tuple[str, ...] | list[str] | None, severities: tuple[int, ...] | list[int] | None
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The corruptions and severities to measure (None: all), in protocol order; ValueError
    names an unknown corruption or a severity outside 1..5."""
    names = tuple(corruptions) if corruptions else CORRUPTIONS
    unknown = [c for c in names if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption {unknown[0]!r}; choose from {', '.join(CORRUPTIONS)}")
    levels = tuple(severities) if severities else SEVERITIES
    bad = [s for s in levels if s not in SEVERITIES]
    if bad:
        raise ValueError(f"severity must be one of 1..5, got {bad[0]!r}")
    return (
        tuple(c for c in CORRUPTIONS if c in names),
        tuple(sorted(set(int(s) for s in levels))),
    )
