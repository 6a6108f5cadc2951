r"""
ScheduleFree
============

The train/eval switching that schedule-free optimizers (the ``schedulefree`` package) need, done by a callback.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lightning_tuning.callbacks._names import unwrap_optimizer


def is_schedule_free(optimizer: Any) -> bool:
    """Whether ``optimizer`` has schedule-free train/eval modes (``AdamWScheduleFree``, ``SGDScheduleFree``,
    ``RAdamScheduleFree``, ``ScheduleFreeWrapper``, ...)."""
    optimizer = unwrap_optimizer(optimizer)
    has_modes = callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))
    flagged = hasattr(optimizer, "train_mode") or any("train_mode" in group for group in optimizer.param_groups)
    return has_modes and flagged


def in_train_mode(optimizer: Any) -> bool:
    optimizer = unwrap_optimizer(optimizer)
    if hasattr(optimizer, "train_mode"):
        return bool(optimizer.train_mode)
    return bool(optimizer.param_groups[0].get("train_mode", False))


class ScheduleFree(Callback):
    r"""Switch schedule-free optimizers between their train and eval modes at the right moments.

    Schedule-free optimizers (Defazio et al. 2024, ``pip install schedulefree``) keep two points: the one the
    gradients are taken at (train mode) and the average that should be evaluated and saved (eval mode). The user
    must call ``optimizer.train()`` before training steps and ``optimizer.eval()`` before validation, testing,
    prediction and saving; forgetting either evaluates or saves the wrong weights (Lightning #20441). This callback
    does it:

    * train mode at the start of fit (before an LR range test runs), and before every training batch;
    * eval mode at the start of validation (the sanity check too), test and prediction, and at the end of training,
      so the weights left in the module (and a later ``trainer.test`` or ``save_checkpoint``) are the averaged ones;
    * checkpoints always hold the eval-mode weights, with the optimizer state marked as eval mode: a checkpoint
      written in train mode (e.g. ``every_n_train_steps``) is taken in eval mode and training goes on from the same
      point, so a resumed run continues exactly as an uninterrupted one.

    The optimizer's own ``group["lr"]`` is what it uses as the peak LR, so the pack's schedules compose with it as
    with any optimizer; its authors recommend a warmup (``Warmup``, or the optimizer's ``warmup_steps``) and no decay.
    Switching is done for every schedule-free optimizer of the module; others are left alone.

    Args:
        require: raise at the start of fit when no optimizer is schedule-free (default ``True``), instead of doing
            nothing.

    Raises:
        MisconfigurationException: at the start of fit, when ``require`` and no optimizer has train/eval modes.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import ScheduleFree, Warmup
        >>> trainer = Trainer(callbacks=[ScheduleFree(), Warmup(500)])  # with schedulefree.AdamWScheduleFree
    """

    def __init__(self, require: bool = True) -> None:
        self.require = require

    @staticmethod
    def _optimizers(trainer: pl.Trainer) -> list[Any]:
        return [unwrap_optimizer(o) for o in trainer.optimizers if is_schedule_free(o)]

    def _set(self, trainer: pl.Trainer, train: bool) -> None:
        for optimizer in self._optimizers(trainer):
            if in_train_mode(optimizer) != train:
                optimizer.train() if train else optimizer.eval()

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.require and not self._optimizers(trainer):
            names = [type(unwrap_optimizer(o)).__name__ for o in trainer.optimizers]
            raise MisconfigurationException(
                f"ScheduleFree: none of the optimizers {names} is schedule-free (has train()/eval() modes). Use one "
                "from the `schedulefree` package (e.g. schedulefree.AdamWScheduleFree; `pip install "
                "lightning-tuning[schedulefree]`), or remove the callback."
            )
        self._set(trainer, train=True)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, train=True)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._set(trainer, train=True)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, train=False)

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, train=False)

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, train=False)

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, train=False)

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        optimizers = self._optimizers(trainer)
        if not any(in_train_mode(optimizer) for optimizer in optimizers):
            return
        # The checkpoint was assembled in train mode: retake the weights and optimizer states in eval mode.
        self._set(trainer, train=False)
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = {
                key: value.detach().clone() if isinstance(value, torch.Tensor) else value
                for key, value in trainer.strategy.lightning_module_state_dict().items()
            }
        if "optimizer_states" in checkpoint:
            checkpoint["optimizer_states"] = [trainer.strategy.optimizer_state(o) for o in trainer.optimizers]
        self._set(trainer, train=True)
