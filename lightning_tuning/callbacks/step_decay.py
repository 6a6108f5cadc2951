r"""
StepDecay
=========

Multiply the learning rate by ``gamma`` every ``step_size`` units: torch's ``StepLR`` as a callback.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl

from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_duration_arg, check_positive
from lightning_tuning.schedules import Progress, RunLength, step_factor
from lightning_tuning.schedules.durations import Duration, Interval


class StepDecay(LRScheduleCallback):
    r"""Fixed step decay: ``lr = base_lr * gamma ** (t // step_size)``, the article's "fixed decay".

    Same arguments and meaning as ``torch.optim.lr_scheduler.StepLR``. Like a torch scheduler in Lightning,
    one unit is an epoch by default; set ``interval="step"`` to count optimizer steps.

    Args:
        step_size: units between two decays (``int``), or ``"10epochs"``, ``"1000steps"``, ``"25%"``.
        gamma: multiplier at each decay, ``> 0`` (``0.1`` as in torch).
        interval: ``"epoch"`` (default) or ``"step"``.
        start: units to wait before the schedule's clock starts (``"after_warmup"``: when the Warmup ends).
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone. A length left out then spans ``start`` to ``end``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.

    Raises:
        MisconfigurationException: for ``gamma <= 0``, a ``step_size`` that is not a positive duration, or one
            longer than the run (the decay would never happen).

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import StepDecay
        >>> trainer = Trainer(max_epochs=90, callbacks=[StepDecay(step_size=30, gamma=0.1)])
    """

    group_independent = True

    def __init__(
        self,
        step_size: Duration,
        gamma: float = 0.1,
        interval: Interval = "epoch",
        start: Duration | Literal["after_warmup"] = 0,
        optimizers: list[int] | None = None,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        check_duration_arg(step_size, "StepDecay.step_size", allow_zero=False)
        check_positive(gamma, "gamma", "StepDecay")
        if start != "after_warmup":
            check_duration_arg(start, "StepDecay.start")
        self.step_size = step_size
        self.gamma = float(gamma)
        self.start = start
        self._step_units = 1
        self._config.update(step_size=step_size, gamma=self.gamma, start=start)

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._resolve_window(trainer, run, self.start)
        self._step_units = self._duration(self.step_size, run, "step_size")
        if self._step_units <= 0:
            raise ValueError(f"StepDecay.step_size={self.step_size!r} resolves to 0 {self.interval}s; use at least 1.")
        first_decay = max(self._start_units.values(), default=0) + self._step_units
        self._check_within_run(first_decay, run, "step_size", "the first decay would come after the run ends")

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        return step_factor(self.units(progress, optimizer_index), self._step_units, self.gamma)
