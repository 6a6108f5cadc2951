r"""
PlateauDecay
============

Lower the learning rate when a validation metric stops improving: torch's ``ReduceLROnPlateau`` as a callback
that composes with warmup and the other schedules.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.optim import Optimizer
from typing_extensions import override

from lightning_tuning._compat import batches_that_stepped, has_validation_data
from lightning_tuning.callbacks._coordinator import coordinator_for
from lightning_tuning.callbacks._names import unwrap_optimizer
from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_positive, optimizer_names, per_group
from lightning_tuning.schedules import PlateauTracker, RunLength


class PlateauDecay(LRScheduleCallback):
    r"""Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` validations.

    Same arguments, meanings and defaults as ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (plus ``monitor``): fed
    the same sequence of values, it sets the same LRs. Unlike torch's, it composes with other schedules: its
    accumulated reduction multiplies whatever :class:`~lightning_tuning.Warmup`, a cosine or a step decay say,
    and ``min_lr`` bounds the LR the optimizer finally sees. It acts after every validation run, at whatever
    cadence validation runs (every epoch, ``check_val_every_n_epoch``, ``val_check_interval``).

    Under DDP the monitored value is averaged across processes before the decision, so every rank reduces at the
    same time. A non-finite value never counts as an improvement.

    Args:
        monitor: the logged metric to watch (log it in ``validation_step``).
        mode: ``"min"`` (lower is better) or ``"max"``.
        factor: multiplier at each reduction, in ``(0, 1)``.
        patience: validations without improvement before reducing.
        threshold: the least change that counts as an improvement.
        threshold_mode: ``"rel"`` (``best * (1 -/+ threshold)``) or ``"abs"`` (``best -/+ threshold``).
        cooldown: validations to wait after a reduction before counting again.
        min_lr: the lowest LR reductions lead to, one value or one per param group.
        eps: a reduction smaller than this is skipped.
        optimizers: indices of the optimizers to act on; ``None`` (default) for all.

    Raises:
        MisconfigurationException: for ``factor`` outside ``(0, 1)``, a negative ``patience``/``cooldown``/
            ``threshold``/``min_lr``, or (at the first validation) a ``monitor`` that is not logged, with the
            list of metrics that are.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import PlateauDecay, Warmup
        >>> trainer = Trainer(callbacks=[Warmup(200), PlateauDecay(monitor="val_loss", factor=0.5, patience=3)])
    """

    is_floor = True

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
        optimizers: list[int] | None = None,
    ) -> None:
        super().__init__(interval="step", optimizers=optimizers)
        if not isinstance(monitor, str) or not monitor:
            raise MisconfigurationException(f"PlateauDecay: `monitor={monitor!r}` must name a logged metric.")
        if mode not in ("min", "max"):
            raise MisconfigurationException(f"PlateauDecay: `mode={mode!r}` is not allowed; use 'min' or 'max'.")
        if threshold_mode not in ("rel", "abs"):
            raise MisconfigurationException(
                f"PlateauDecay: `threshold_mode={threshold_mode!r}` is not allowed; use 'rel' or 'abs'."
            )
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise MisconfigurationException(
                f"PlateauDecay: `factor={factor!r}` must lie in (0, 1): the LR is multiplied by it at each reduction."
            )
        for name, count in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise MisconfigurationException(f"PlateauDecay: `{name}={count!r}` must be an integer >= 0.")
        check_positive(threshold, "threshold", "PlateauDecay", allow_zero=True)
        check_positive(eps, "eps", "PlateauDecay", allow_zero=True)
        for value in min_lr if isinstance(min_lr, list) else [min_lr]:
            check_positive(value, "min_lr", "PlateauDecay", allow_zero=True)
        self.monitor = monitor
        self.mode = mode
        self.factor = float(factor)
        self.patience = patience
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.eps = float(eps)
        self._trackers: dict[int, PlateauTracker] = {}
        self._warned_non_finite = False
        self._min_lrs: dict[int, list[float]] = {}
        self._config.update(
            monitor=monitor,
            mode=mode,
            factor=self.factor,
            patience=patience,
            threshold=self.threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=self.eps,
        )

    def _tracker(self, optimizer_index: int) -> PlateauTracker:
        if optimizer_index not in self._trackers:
            self._trackers[optimizer_index] = PlateauTracker(
                self.mode, self.factor, self.patience, self.threshold, self.threshold_mode, self.cooldown
            )
        return self._trackers[optimizer_index]

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        module = trainer.lightning_module
        validates = (
            trainer.limit_val_batches != 0 and is_overridden("validation_step", module) and has_validation_data(trainer)
        )
        if not validates:
            raise ValueError(
                f"PlateauDecay(monitor={self.monitor!r}) decides after each validation run, but this fit has none "
                "(no `validation_step`, no validation data, or `limit_val_batches=0`): it would never lower the LR. "
                "Add a validation_step and val_dataloader that log the metric, or use a fixed decay such as "
                "CosineAnnealing or StepDecay."
            )

    def resolve_groups(self, optimizer_index: int, optimizer: Optimizer) -> None:
        groups = len(optimizer.param_groups)
        self._min_lrs[optimizer_index] = per_group(self.min_lr, groups, "PlateauDecay.min_lr")
        self._tracker(optimizer_index).set_group_count(groups)

    def lr_floor(self, optimizer_index: int, group_index: int, base_lr: float) -> tuple[float, float]:
        scales = self._trackers[optimizer_index].scales
        scale = scales[group_index] if group_index < len(scales) else 1.0
        return scale, self._min_lrs[optimizer_index][group_index]

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit" or self._coordinator is None:
            return
        if self.monitor not in trainer.callback_metrics:
            available = sorted(trainer.callback_metrics)
            raise MisconfigurationException(
                f"PlateauDecay: `monitor={self.monitor!r}` was not logged by this validation run. Logged metrics: "
                f"{available}. PlateauDecay acts after every validation, so log the metric in validation_step "
                f"(e.g. `self.log({self.monitor!r}, loss)`) or set `monitor` to one of those."
            )
        if trainer.sanity_checking:
            return
        metric = trainer.callback_metrics[self.monitor].detach().float().to(pl_module.device)
        value = float(trainer.strategy.reduce(metric, reduce_op="mean"))
        if not math.isfinite(value):
            # a diverged run is NonFiniteLossGuard's business: cutting the LR on a NaN only hides it
            if not self._warned_non_finite:
                self._warned_non_finite = True
                rank_zero_warn(
                    f"PlateauDecay: `{self.monitor}` is {value} at step {trainer.global_step}; validations with a "
                    "non-finite value are skipped (no reduction, no patience used). The model has likely diverged: "
                    "lower the LR or lengthen the warmup."
                )
            return
        reduced_any = False
        names = optimizer_names(trainer.optimizers)
        coordinator = coordinator_for(trainer)
        for index, optimizer in enumerate(trainer.optimizers):
            if not self.targets(index):
                continue
            optimizer = unwrap_optimizer(optimizer)
            tracker = self._tracker(index)
            tracker.set_group_count(len(optimizer.param_groups))
            current_lrs = [float(group["lr"]) for group in optimizer.param_groups]
            if tracker.update(value, current_lrs, self._min_lrs[index], self.eps):
                reduced_any = True
                if coordinator is not None:
                    coordinator.write_optimizer(index)
                lrs = ", ".join(f"{group['lr']:.3g}" for group in optimizer.param_groups)
                rank_zero_info(
                    f"PlateauDecay: `{self.monitor}` has not improved on {self._tracker(index).best:.5g} for more "
                    f"than {self.patience} validation(s); {names[index]} learning rate reduced to [{lrs}]."
                )
        self._log_state(trainer, value, reduced_any)

    def _log_state(self, trainer: pl.Trainer, value: float, reduced: bool) -> None:
        if not trainer.loggers:
            return
        metrics: dict[str, float] = {"plateau/reduced": float(reduced)}
        names = optimizer_names(trainer.optimizers)
        for index, tracker in self._trackers.items():
            metrics[f"plateau/{names[index]}/num_reductions"] = float(tracker.num_reductions)
            metrics[f"plateau/{names[index]}/bad_validations"] = float(tracker.num_bad_epochs)
            for group, scale in enumerate(tracker.scales):
                metrics[f"plateau/{names[index]}/scale/pg{group}"] = scale
        step = batches_that_stepped(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    @property
    def num_reductions(self) -> int:
        return sum(tracker.num_reductions for tracker in self._trackers.values())

    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["trackers"] = {str(index): tracker.state_dict() for index, tracker in self._trackers.items()}
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for key, tracker_state in state_dict.get("trackers", {}).items():
            self._tracker(int(key)).load_state_dict(tracker_state)
