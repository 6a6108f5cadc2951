r"""
ExponentialDecay
================

Multiply the learning rate by ``gamma`` every unit: torch's ``ExponentialLR`` as a callback.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException

from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_duration_arg
from lightning_tuning.schedules import Progress, RunLength, exponential_factor
from lightning_tuning.schedules.durations import Duration, Interval


class ExponentialDecay(LRScheduleCallback):
    r"""Exponential decay: ``lr = base_lr * gamma ** t``.

    Same arguments and meaning as ``torch.optim.lr_scheduler.ExponentialLR``; one unit is an epoch by default.

    Args:
        gamma: multiplier per unit, in ``(0, 1]``.
        interval: ``"epoch"`` (default) or ``"step"``.
        start: units to wait before the schedule's clock starts (``"after_warmup"``: when the Warmup ends).
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone. A length left out then spans ``start`` to ``end``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.

    Raises:
        MisconfigurationException: for ``gamma`` outside ``(0, 1]`` (a growing LR is not a decay).

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import ExponentialDecay
        >>> trainer = Trainer(callbacks=[ExponentialDecay(gamma=0.95)])
    """

    group_independent = True

    def __init__(
        self,
        gamma: float,
        interval: Interval = "epoch",
        start: Duration | Literal["after_warmup"] = 0,
        optimizers: list[int] | None = None,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
            raise MisconfigurationException(
                f"ExponentialDecay: `gamma={gamma!r}` must lie in (0, 1]: the LR is multiplied by it every {interval}."
            )
        if start != "after_warmup":
            check_duration_arg(start, "ExponentialDecay.start")
        self.gamma = float(gamma)
        self.start = start
        self._config.update(gamma=self.gamma, start=start)

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._resolve_window(trainer, run, self.start)

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        return exponential_factor(self.units(progress, optimizer_index), self.gamma)
