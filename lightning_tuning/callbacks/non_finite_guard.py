"""Stop (or warn) when the training loss becomes NaN or infinite, once, with where it happened and what to try."""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from lightning_tuning import _compat
from lightning_tuning.callbacks._loss_watch import NonFiniteLossWatch

_ACTIONS = ("warn", "stop")


class NonFiniteLossGuard(Callback):
    """Watches the training loss and reports the first NaN or infinite value, then stops the run or lets it go on.

    The loss is the one ``training_step`` returns (a tensor, or the ``"loss"`` entry of a dict). A module that
    returns nothing (manual optimization, e.g. a GAN) is watched through the training metrics it logs whose name
    contains ``loss`` (``d_loss``, ``g_loss``).

    The report comes once per run, on rank 0, with the optimizer step, the epoch and batch, the learning rate(s) in
    use and what to try. With ``action="stop"`` the trainer stops after that batch, as
    ``EarlyStopping(check_finite=True)`` stops on a non-finite monitored metric; with ``action="warn"`` training goes
    on (NaN weights stay NaN).

    Under DDP every rank's loss is checked and the ranks agree on the decision (one ``all_reduce`` of a flag), so all
    of them stop together. On the CPU the check costs a ``.item()`` per step. On an accelerator it is folded into a
    flag that stays on the device and is read only on the steps Lightning logs and at each epoch end (reading a value
    back would otherwise make the host wait for the device on every step); the report then names the range of steps.

    The ``python -m lightning_tuning`` command line adds ``NonFiniteLossGuard(action="stop")`` to every run
    (``--non_finite_guard.action warn`` to go on, ``--non_finite_guard null`` to turn it off).

    Args:
        action: ``"stop"`` ends the run after the first non-finite loss; ``"warn"`` only reports it.
        defer: Read the loss only at logging steps and epoch ends; ``None`` decides from the loss's device
            (deferred unless on the CPU).

    Raises:
        MisconfigurationException: If ``action`` is not ``"warn"`` or ``"stop"``.

    Example::

        trainer = Trainer(callbacks=[NonFiniteLossGuard(action="stop")])
    """

    def __init__(self, action: Literal["warn", "stop"] = "stop", defer: bool | None = None) -> None:
        if action not in _ACTIONS:
            raise MisconfigurationException(
                f"NonFiniteLossGuard: `action={action!r}` is not allowed; use 'warn' (report and go on) or 'stop'."
            )
        if defer is not None and not isinstance(defer, bool):
            raise MisconfigurationException(f"NonFiniteLossGuard: `defer={defer!r}` must be true, false or null.")
        self.action = action
        self.defer = defer
        self._watch = NonFiniteLossWatch(defer)
        self._step = 0
        self._lrs = ""
        self.tripped_at: int | None = None
        """The optimizer step whose loss was found non-finite first (``None`` while all were finite)."""
        self.message: str | None = None
        """The report, once one was made."""

    @property
    @override
    def state_key(self) -> str:
        return "NonFiniteLossGuard"

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._watch = NonFiniteLossWatch(self.defer)
            self.tripped_at, self.message = None, None

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.tripped_at is None:
            self._step = trainer.global_step
            self._lrs = _learning_rates(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.tripped_at is not None:
            return
        losses = _training_losses(outputs, trainer)
        problem = self._watch.update(losses, self._step) if losses else None
        deferred = self._watch.pending
        if deferred and _compat.should_update_logs(trainer):
            problem = self._watch.flush(self._step)
            deferred = False
        if deferred:
            return  # the flag stays on the device until a logging step: every rank defers alike
        self._decide(trainer, problem, batch_idx)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.tripped_at is None and self._watch.pending:
            self._decide(trainer, self._watch.flush(self._step), None)

    def _decide(self, trainer: pl.Trainer, problem: str | None, batch_idx: int | None) -> None:
        non_finite = trainer.strategy.reduce_boolean_decision(problem is not None, all=False)
        if not non_finite:
            return
        self.tripped_at = self._step
        if problem is None:
            problem = f"The training loss became NaN or infinite on another rank at optimizer step {self._step}"
        where = f"epoch {trainer.current_epoch}" + (f", batch {batch_idx}" if batch_idx is not None else "")
        then = (
            "Training stops here (`NonFiniteLossGuard(action='stop')`); checkpoints written from now on hold "
            "non-finite weights: resume from one written earlier."
            if self.action == "stop"
            else "Training goes on (`action='warn'`); it is not reported again."
        )
        self.message = (
            f"{problem} ({where}), trained with learning rate(s) {self._lrs}. A learning rate too high for this "
            "point of the schedule is the usual cause: lower the peak LR, lengthen the warmup, clip gradients "
            "(`--trainer.gradient_clip_val 1.0`), or run `python -m lightning_tuning lr_find` to pick one. "
            "Bad inputs (NaN in the data) and log/division of zero in the loss give the same symptom. " + then
        )
        rank_zero_warn(self.message, category=RuntimeWarning)
        if self.action == "stop":
            trainer.should_stop = True


def _learning_rates(trainer: pl.Trainer) -> str:
    parts = []
    for index, optimizer in enumerate(trainer.optimizers):
        lrs = ", ".join(f"{float(group['lr']):.4g}" for group in optimizer.param_groups)
        parts.append(f"{type(optimizer).__name__}[{index}]: {lrs}" if len(trainer.optimizers) > 1 else lrs)
    return "; ".join(parts) or "none (no optimizer)"


def _training_losses(outputs: Any, trainer: pl.Trainer) -> list[torch.Tensor]:
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if isinstance(loss, torch.Tensor):
        return [loss]
    # nothing returned (manual optimization): the losses the module logged on this step
    return [
        value
        for name, value in trainer.callback_metrics.items()
        if "loss" in name
        and isinstance(value, torch.Tensor)
        and not name.startswith(("val", "test", "valid", "predict"))
        and not name.endswith("_epoch")
    ]
