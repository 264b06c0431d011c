"""Model registry: every model is created by name through ``create_model``.

Modelled on torchvision's ``register_model`` / ``get_model`` and timm's ``create_model`` /
``list_models``: builders are keyword-only functions registered under their own name.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ._base import CNNBenchModel

_F = TypeVar("_F", bound=Callable[..., CNNBenchModel])

_MODELS: dict[str, Callable[..., CNNBenchModel]] = {}


def register_model(fn: _F) -> _F:
    """Register a builder under ``fn.__name__``; a name already taken raises ``ValueError``."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(
            f"a model named {name!r} is already registered (by {_MODELS[name].__module__}); "
            "model names must be unique"
        )
    _MODELS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by an fnmatch pattern (``"mobilenet*"``)."""
    names = sorted(_MODELS)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def describe_model(name: str) -> str:
    """First line of the builder's docstring: what ``cnnbench models`` shows."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(_MODELS))}")
    doc = (_MODELS[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def create_model(
    name: str, *, num_classes: int | None = None, pretrained: str | None = None, **kwargs: Any
) -> CNNBenchModel:
    """Build the model registered as ``name``.

    ``pretrained="cifar10"`` (or another dataset) returns the zoo's trained ``<name>-<dataset>``
    (see ``cnnbench zoo``), weights checked against the card's sha256, in eval mode; its head
    is replaced by a fresh one if ``num_classes`` is given and differs. Without ``pretrained``,
    ``num_classes`` defaults to 10.

    Unknown names raise ``ValueError`` listing the valid ones; arguments the builder does not
    take raise ``TypeError`` listing the ones it does. The model gets
    ``cnnbench_spec = {"name": name, "num_classes": num_classes, **kwargs}`` so that
    ``create_model(**model.cnnbench_spec)`` rebuilds the same architecture.
    """
    if pretrained is not None:
        if kwargs:
            raise TypeError(f"pretrained {name!r} takes no builder arguments, got {sorted(kwargs)}")
        from cnnbench.zoo import pretrained_checkpoint

        ckpt = pretrained_checkpoint(name, pretrained)
        model = create_model(**ckpt["model_spec"])
        model.load_state_dict(ckpt["model"])
        if num_classes is not None and num_classes != model.num_classes:
            model.reset_classifier(num_classes)
        return model.eval()
    num_classes = 10 if num_classes is None else num_classes
    try:
        builder = _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}; available models: {', '.join(list_models())}"
        ) from None
    # Check the arguments against the signature first, so a typo reads as a bad argument
    # and not as a TypeError from somewhere deep inside the constructor.
    signature = inspect.signature(builder)
    try:
        signature.bind(num_classes=num_classes, **kwargs)
    except TypeError as err:
        accepted = ", ".join(p for p in signature.parameters if p != "num_classes")
        raise TypeError(
            f"bad arguments for model {name!r}: {err}; it accepts num_classes and: {accepted}"
        ) from None
    model = builder(num_classes=num_classes, **kwargs)
    # Deep copy: a caller mutating its own list (e.g. an inverted_residual_setting) later
    # must not change what the checkpoint says the model is.
    model.cnnbench_spec = {"name": name, "num_classes": num_classes, **copy.deepcopy(kwargs)}
    return model
