"""Fixtures of the bench tests: a fake run of an untrained model (no data needed)."""

from __future__ import annotations

from cnnbench.data import CIFAR10_CLASSES

CIFAR_CLASSES = list(CIFAR10_CLASSES)
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
