r"""
BaseLR
======

Set the learning rate of the module's own optimizer from the outside, keeping its param groups and their ratios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from torch.optim import Optimizer
from typing_extensions import override

#: the group keys that hold a base LR: torch's schedulers' ``initial_lr`` and the schedule coordinator's snapshot
BASE_LR_KEYS = ("initial_lr", "lt_base_lr")


def base_lrs(optimizer: Optimizer) -> list[float]:
    """The base LR of each param group: the one schedules start from (the schedule coordinator's ``lt_base_lr``, or a
    torch scheduler's ``initial_lr``, or the LR itself)."""
    return [float(group.get("lt_base_lr", group.get("initial_lr", group["lr"]))) for group in optimizer.param_groups]


def scale_lrs(optimizer: Optimizer, factor: float, schedulers: Sequence[Any] = ()) -> None:
    """Multiply every LR of ``optimizer`` by ``factor``: each group's ``lr`` and its base LRs (``initial_lr``,
    ``lt_base_lr``), and the ``base_lrs`` of the torch schedulers in ``schedulers`` that drive it, so the
    groups keep their ratios and the module's own schedule runs unchanged around the new level."""
    for group in optimizer.param_groups:
        group["lr"] = _scaled(group["lr"], factor)
        for key in BASE_LR_KEYS:
            if key in group:
                group[key] = _scaled(group[key], factor)
    for scheduler in schedulers:
        if getattr(scheduler, "optimizer", None) is optimizer and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]


def _scaled(value: Any, factor: float) -> Any:
    # an LR held as a tensor (capturable / compiled optimizers) is scaled in place, as torch writes it
    if hasattr(value, "mul_"):
        return value.mul_(factor)
    return value * factor


class BaseLR(Callback):
    r"""Scale the LRs of the module's own optimizer so that param group 0 starts at ``lr``.

    The module's ``configure_optimizers`` stays as it is: the optimizer class, its other hyperparameters (betas,
    weight decay), its param groups and their LR ratios, and its LR schedulers. Every group's LR is multiplied by
    ``lr / base_lr[0]`` at ``on_fit_start``, the base LRs that schedules start from included. This is how the
    suggestion of ``python -m lightning_tuning lr_find`` is applied (it prints this callback as a config snippet).
    When resuming from a checkpoint it does nothing: the checkpoint's optimizer state already has the LRs.

    Args:
        lr: the new base LR of param group 0, a finite number ``> 0``.
        optimizer_index: which optimizer of ``configure_optimizers`` to scale.

    Raises:
        MisconfigurationException: at construction for a non-positive or non-finite ``lr`` or a negative
            ``optimizer_index``; at the start of ``fit`` if there is no optimizer ``optimizer_index``.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import BaseLR
        >>> trainer = Trainer(callbacks=[BaseLR(lr=3e-3)])
    """

    def __init__(self, lr: float, optimizer_index: int = 0) -> None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise MisconfigurationException(
                f"BaseLR: `lr={lr!r}` is not allowed; it must be a finite number > 0 (the new LR of param group 0)."
            )
        if isinstance(optimizer_index, bool) or not isinstance(optimizer_index, int) or optimizer_index < 0:
            raise MisconfigurationException(
                f"BaseLR: `optimizer_index={optimizer_index!r}` is not allowed; it must be an integer >= 0."
            )
        self.lr = float(lr)
        self.optimizer_index = optimizer_index

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is not None:
            return
        if self.optimizer_index >= len(trainer.optimizers):
            raise MisconfigurationException(
                f"BaseLR: `optimizer_index={self.optimizer_index}`, but configure_optimizers returned "
                f"{len(trainer.optimizers)} optimizer(s); use an index below {len(trainer.optimizers)}."
            )
        optimizer = trainer.optimizers[self.optimizer_index]
        base = base_lrs(optimizer)[0]
        if base <= 0:
            raise MisconfigurationException(
                f"BaseLR: param group 0 of optimizer {self.optimizer_index} has LR {base}; a ratio to it is undefined."
            )
        schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
        scale_lrs(optimizer, self.lr / base, schedulers)
