r"""
MultiStepDecay
==============

Multiply the learning rate by ``gamma`` at each milestone: torch's ``MultiStepLR`` as a callback.
"""

from __future__ import annotations

import itertools
from typing import Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException

from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_duration_arg, check_positive
from lightning_tuning.schedules import Progress, RunLength, multi_step_factor
from lightning_tuning.schedules.durations import Duration, Interval


class MultiStepDecay(LRScheduleCallback):
    r"""Decay at milestones: ``lr = base_lr * gamma ** (number of milestones reached)``.

    Same arguments and meaning as ``torch.optim.lr_scheduler.MultiStepLR``; one unit is an epoch by default.

    Args:
        milestones: increasing points of the schedule where the LR decays: ints (units of ``interval``) or
            durations such as ``"30epochs"``, ``"50%"``.
        gamma: multiplier at each milestone, ``> 0``.
        interval: ``"epoch"`` (default) or ``"step"``.
        start: units to wait before the schedule's clock starts (``"after_warmup"``: when the Warmup ends).
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone. A length left out then spans ``start`` to ``end``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.

    Raises:
        MisconfigurationException: for an empty or non-increasing ``milestones`` list, ``gamma <= 0``, or a
            milestone beyond the end of the run.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import MultiStepDecay
        >>> trainer = Trainer(max_epochs=90, callbacks=[MultiStepDecay(milestones=[30, 60, 80])])
    """

    group_independent = True

    def __init__(
        self,
        milestones: list[Duration],
        gamma: float = 0.1,
        interval: Interval = "epoch",
        start: Duration | Literal["after_warmup"] = 0,
        optimizers: list[int] | None = None,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        if not isinstance(milestones, (list, tuple)) or not milestones:
            raise MisconfigurationException(
                f"MultiStepDecay: `milestones={milestones!r}` must be a non-empty list of durations, e.g. [30, 60]."
            )
        for position, milestone in enumerate(milestones):
            check_duration_arg(milestone, f"MultiStepDecay.milestones[{position}]")
        check_positive(gamma, "gamma", "MultiStepDecay")
        if start != "after_warmup":
            check_duration_arg(start, "MultiStepDecay.start")
        self.milestones = list(milestones)
        self.gamma = float(gamma)
        self.start = start
        self._milestone_units: list[int] = []
        self._config.update(milestones=self.milestones, gamma=self.gamma, start=start)

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._resolve_window(trainer, run, self.start)
        units = [self._duration(m, run, f"milestones[{i}]") for i, m in enumerate(self.milestones)]
        if any(later <= earlier for earlier, later in itertools.pairwise(units)):
            raise ValueError(
                f"MultiStepDecay.milestones={self.milestones!r} resolve to {units} {self.interval}s, which are not "
                "strictly increasing: list each milestone once, in order."
            )
        last = max(self._start_units.values(), default=0) + units[-1]
        self._check_within_run(
            last,
            run,
            f"milestones[{len(units) - 1}]",
            f"that decay (milestones={self.milestones!r}) would never happen",
        )
        self._milestone_units = units

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        return multi_step_factor(self.units(progress, optimizer_index), self._milestone_units, self.gamma)
