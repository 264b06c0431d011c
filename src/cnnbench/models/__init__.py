"""Model registry and architectures; every model is created by name via ``create_model``.

Importing this package registers every architecture below (torch is the only heavy import).
"""

# Imported for their side effect: each module registers its builder(s).
from . import (  # noqa: F401
    fastnet,
    lenet5,
    mobilenetv2,
    mobilenetv2_reduced,
    resnet34,
    resnet_cifar,
)
from ._base import CNNBenchModel
from ._registry import create_model, describe_model, list_models, register_model

__all__ = ["CNNBenchModel", "create_model", "describe_model", "list_models", "register_model"]
