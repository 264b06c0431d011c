"""Fine-tuning a child run from a parent run's checkpoint, with a freeze policy.

The trainer calls three functions when ``config.transfer`` is set:

- ``build_child(config, num_classes)``: the parent's model (its checkpoint, validated against
  the child's config), with a fresh head for ``num_classes`` and the policy of epoch 1 applied;
- ``optimizer_groups(model, config)``: parameter groups, the head at ``lr`` and the backbone
  at ``lr * backbone_lr_mult``, weight decay on weights (``ndim > 1``) only;
- ``on_epoch_start(model, config, epoch)``: what trains during ``epoch`` (1-based).

Policies, over the model's ``freeze_groups()`` (the backbone, input -> output, G groups):

    policy    trains at epoch e
    head      the head only
    last-k    the last k groups + the head (k <= G)
    full      everything
    gradual   the head + the last min(G, (e - 1) // gradual_every) groups (ULMFiT-style:
              epoch 1 trains the head alone, then one more group from the end every
              ``gradual_every`` epochs)

What trains at an epoch is a pure function of the epoch, so a resumed run freezes exactly
what the uninterrupted run froze.

A frozen group is frozen completely: ``requires_grad`` is off for its parameters, and it runs
in eval mode, so its BatchNorm layers neither update their running statistics nor normalise
with batch statistics (and dropout inside it, if any, is off). The trainer calls
``model.train()`` at the start of every epoch, which would put those layers back in training
mode; a forward pre-hook on every backbone group (registered once, by ``on_epoch_start``)
switches a frozen group back to eval mode right before it runs. The hook was chosen over
patching ``model.train`` or swapping BatchNorm classes because it leaves the model's class,
methods and state dict untouched: the checkpoint of a child is an ordinary checkpoint.

Optimizer contents: for ``head`` and ``last-k`` the optimizer holds only the parameters that
train (nothing frozen gets weight decay or momentum). For ``gradual`` it holds every
parameter from the start, so its state dict has the same layout at every epoch and resume
is exact; a still-frozen parameter has no gradient (``zero_grad(set_to_none=True)``), and
every optimizer skips a parameter whose ``.grad`` is None, so it is neither moved nor decayed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from cnnbench.rundir import SUMMARY, RunDir, RunDirError
from cnnbench.train.checkpoint import CheckpointError, load_checkpoint
from cnnbench.train.config import ConfigError, RunConfig, TransferConfig
from cnnbench.train.optim import split_decay
from cnnbench.zoo import find as zoo_find

# Set on each backbone group: True while the group is frozen (read by the pre-hook).
_FROZEN_ATTR = "_cnnbench_frozen"


# --- the parent -----------------------------------------------------------------------------


def parent_checkpoint_path(transfer: TransferConfig) -> Path:
    """The parent's checkpoint file: its run's ``transfer.checkpoint`` (best or last), or the
    .pt file given.

    ``parent`` may also name a shipped zoo model (``zoo:fastnet_small-cifar100``).
    Raises CheckpointError if the parent does not exist, or is a run directory that has not
    finished (a child of a half-trained parent would be silently worse; pass the .pt file
    itself to transfer from an unfinished run on purpose).
    """
    parent = Path(transfer.parent)
    if not parent.exists() and zoo_find(transfer.parent) is not None:
        parent = zoo_find(transfer.parent)  # a shipped model: `parent: zoo:NAME` or NAME
    if parent.is_dir():
        run = RunDir(parent)
        path = run.checkpoint_path(transfer.checkpoint)
        if not run.is_complete():
            raise CheckpointError(
                f"parent run {parent} is not complete (no {SUMMARY} with status 'complete'); "
                f"finish it with `cnnbench train --resume`, or pass {path} to transfer from it "
                "as it is"
            )
        if not path.is_file():
            raise CheckpointError(f"parent run {parent} has no {path.name}")
        try:
            run.verify(transfer.checkpoint)  # a zoo parent's weights must match its card
        except RunDirError as e:
            raise CheckpointError(str(e)) from None
        return path
    if parent.is_file():
        return parent
    raise CheckpointError(
        f"parent {parent} not found: expected a run directory (e.g. runs/<name>) or a .pt "
        "checkpoint file"
    )


def parent_model_args(spec: dict[str, Any]) -> dict[str, Any]:
    """The builder arguments of a checkpoint's ``model_spec`` (without name and num_classes)."""
    return {k: v for k, v in spec.items() if k not in ("name", "num_classes")}


def _validate_parent(config: RunConfig, ckpt: dict[str, Any], path: Path) -> None:
    """The child must be the parent's architecture, at the parent's input size."""
    spec = ckpt["model_spec"]
    if spec.get("name") != config.model:
        raise ConfigError(
            f"transfer: the parent {path} is a {spec.get('name')!r} but this run's model is "
            f"{config.model!r}; set model to {spec.get('name')!r} (a child keeps the parent's "
            "architecture)"
        )
    parent_args = parent_model_args(spec)
    clashes = {
        k: v for k, v in config.model_args.items() if k not in parent_args or parent_args[k] != v
    }
    if clashes:
        raise ConfigError(
            f"transfer: model_args {clashes} differ from the parent's {parent_args}; a child "
            "is rebuilt from the parent's arguments: leave model_args out or match them"
        )
    parent_size = ckpt.get("input_size")
    if parent_size is not None:
        side = tuple(parent_size[-2:])
        if side != (config.image_size, config.image_size):
            raise ConfigError(
                f"transfer: the parent {path} was trained on {side[0]}x{side[1]} images but "
                f"this run uses {config.image_size}x{config.image_size}; set image_size to "
                f"{side[0]}"
            )


def build_child(config: RunConfig, num_classes: int) -> nn.Module:
    """The parent's model with a fresh ``num_classes`` head, frozen as at epoch 1.

    Raises CheckpointError for a missing, unfinished or foreign parent and ConfigError when
    the child's model, model_args or input size differ from the parent's.
    """
    from cnnbench.models import create_model

    transfer = _transfer(config)
    path = parent_checkpoint_path(transfer)
    ckpt = load_checkpoint(path)
    _validate_parent(config, ckpt, path)
    try:
        model = create_model(**ckpt["model_spec"])
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its model ({e})") from e
    model.reset_classifier(num_classes)  # also sets cnnbench_spec["num_classes"]
    model.train()
    on_epoch_start(model, config, 1)
    return model


def check_transfer(config: RunConfig) -> None:
    """Everything ``build_child`` checks, without the dataset: call it before a run directory
    is created, so that a bad parent or a mismatched model does not leave a half-made run."""
    build_child(config, num_classes=1)


# --- the policy -----------------------------------------------------------------------------


def _transfer(config: RunConfig) -> TransferConfig:
    if config.transfer is None:
        raise ConfigError("this run has no transfer section")
    return config.transfer


def _groups(model: nn.Module) -> list[nn.Module]:
    groups = list(model.freeze_groups())
    if not groups:
        raise ConfigError(f"{type(model).__name__} has no freeze groups to transfer")
    return groups


def trainable_groups(config: RunConfig, num_groups: int, epoch: int) -> int:
    """How many backbone groups (counted from the output end) train during ``epoch``."""
    t = _transfer(config)
    if epoch < 1:
        raise ValueError(f"epochs are 1-based, got {epoch}")
    if t.policy == "head":
        return 0
    if t.policy == "full":
        return num_groups
    if t.policy == "last-k":
        if t.k > num_groups:
            raise ConfigError(
                f"transfer: k={t.k} but the model has only {num_groups} backbone groups; "
                f"use k <= {num_groups}, or policy 'full' to train everything"
            )
        return t.k
    return min(num_groups, (epoch - 1) // t.gradual_every)  # gradual


def budget_states(model: nn.Module, config: RunConfig) -> tuple[int, Callable[[int], int]]:
    """For a time budget: the first epoch from which what trains no longer changes, and a
    function of the epoch that names its state (how many backbone groups train): epochs in
    the same state cost the same. Only ``gradual`` changes (every ``gradual_every`` epochs)."""
    num_groups = len(_groups(model))
    t = _transfer(config)
    steady = 1 + num_groups * t.gradual_every if t.policy == "gradual" else 1
    return steady, lambda epoch: trainable_groups(config, num_groups, epoch)


def _freeze_pre_hook(module: nn.Module, args: Any) -> None:
    # model.train() at the start of an epoch puts every layer in training mode; a frozen
    # group goes back to eval so its BatchNorm statistics stay the parent's.
    if module.training and getattr(module, _FROZEN_ATTR, False):
        module.train(False)


def on_epoch_start(model: nn.Module, config: RunConfig, epoch: int) -> None:
    """Freeze and unfreeze backbone groups for ``epoch`` (1-based); the head always trains.

    Depends on nothing but ``epoch`` and the config, so it is safe to call after a resume.
    """
    groups = _groups(model)
    n_train = trainable_groups(config, len(groups), epoch)
    first_trainable = len(groups) - n_train
    for i, group in enumerate(groups):
        frozen = i < first_trainable
        setattr(group, _FROZEN_ATTR, frozen)
        if _freeze_pre_hook not in group._forward_pre_hooks.values():
            group.register_forward_pre_hook(_freeze_pre_hook)
        for p in group.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            group.train(False)
        else:
            group.train(model.training)
    for p in model.head.parameters():
        p.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("transfer: the freeze policy leaves no parameter to train")


def optimizer_groups(model: nn.Module, config: RunConfig) -> list[dict]:
    """Param groups: head at ``lr``, backbone at ``lr * backbone_lr_mult``; decay on weights.

    The head's groups come first (the trainer logs ``param_groups[0]["lr"]``). Empty groups
    are left out. See the module docstring for which backbone parameters are included.
    """
    t = _transfer(config)
    groups = _groups(model)
    if t.policy == "gradual":
        backbone_modules = groups
    else:
        backbone_modules = groups[len(groups) - trainable_groups(config, len(groups), 1) :]
    backbone = [p for g in backbone_modules for p in g.parameters()]
    head = list(model.head.parameters())
    covered = {id(p) for g in groups for p in g.parameters()} | {id(p) for p in head}
    if covered != {id(p) for p in model.parameters()}:
        # The models' contract: freeze_groups() holds every parameter but the head's.
        raise ConfigError(
            f"{type(model).__name__}.freeze_groups() misses some parameters; cannot transfer"
        )
    out: list[dict] = []
    base_lr = config.effective_lr
    for params, lr in ((head, base_lr), (backbone, base_lr * t.backbone_lr_mult)):
        decay, no_decay = split_decay(params)
        for ps, wd in ((decay, config.weight_decay), (no_decay, 0.0)):
            if ps:
                out.append({"params": ps, "lr": lr, "weight_decay": wd})
    return out
