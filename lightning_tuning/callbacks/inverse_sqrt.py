r"""
InverseSqrt
===========

Linear warmup, then a learning rate falling as the inverse square root of the step (the Transformer schedule).
"""

from __future__ import annotations

import lightning.pytorch as pl

from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_duration_arg
from lightning_tuning.schedules import Progress, RunLength
from lightning_tuning.schedules.durations import Duration, Interval
from lightning_tuning.schedules.inverse_sqrt import default_timescale, inverse_sqrt_factor


class InverseSqrt(LRScheduleCallback):
    r"""Inverse square-root decay: ``1 / sqrt((t + tau - W) / tau)`` of the base LR after a linear warmup of ``W``.

    Vaswani et al. (2017), fairseq's ``inverse_sqrt`` and Hugging Face's ``get_inverse_sqrt_schedule`` exactly:
    ``t / W`` during the warmup (from LR 0), exactly 1 at ``t = W``, then ``sqrt(tau / (t + tau - W))``, halving
    every time ``t + tau - W`` quadruples. It never reaches 0, so it suits runs of open-ended length.

    Args:
        warmup: ``W``, the linear warmup (``int`` units, ``"4000steps"``, ``"1epochs"``, ``"2%"``); 0 for none.
        timescale: ``tau``; default the warmup length, or 10 000 without warmup (Hugging Face's defaults).
        interval: ``"step"`` (default) or ``"epoch"``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone.

    Raises:
        MisconfigurationException: for a warmup or timescale that is not a duration, or a timescale of 0.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import InverseSqrt
        >>> trainer = Trainer(max_steps=100_000, callbacks=[InverseSqrt(warmup=4000)])
    """

    def __init__(
        self,
        warmup: Duration = 0,
        timescale: Duration | None = None,
        interval: Interval = "step",
        optimizers: list[int] | None = None,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        check_duration_arg(warmup, "InverseSqrt.warmup")
        if timescale is not None:
            check_duration_arg(timescale, "InverseSqrt.timescale", allow_zero=False)
        self.warmup = warmup
        self.timescale = timescale
        self._resolved: dict[int, tuple[int, int]] = {}
        self._config.update(warmup=warmup, timescale=timescale)

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._resolved.clear()
        self._resolve_end(trainer, run)
        for index in range(len(trainer.optimizers)):
            if not self.targets(index):
                continue
            warmup = self._duration(self.warmup, run, "warmup")
            if warmup:
                self._check_within_run(warmup, run, "warmup", "the warmup would never finish")
            timescale = None if self.timescale is None else self._duration(self.timescale, run, "timescale")
            self._resolved[index] = (warmup, default_timescale(warmup, timescale))

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        warmup, timescale = self._resolved[optimizer_index]
        return inverse_sqrt_factor(self.units(progress, optimizer_index), warmup, timescale)
