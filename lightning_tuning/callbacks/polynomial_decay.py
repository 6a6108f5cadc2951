r"""
PolynomialDecay
===============

Decay the learning rate to 0 along ``(1 - t / T) ** power``: torch's ``PolynomialLR`` as a callback.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from torch.optim import Optimizer

from lightning_tuning.callbacks._coordinator import base_lr
from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_duration_arg, check_positive, per_group
from lightning_tuning.schedules import Progress, RunLength, polynomial_factor
from lightning_tuning.schedules.durations import Duration, Interval
from lightning_tuning.schedules.polynomial_end import polynomial_end_factor


class PolynomialDecay(LRScheduleCallback):
    r"""Polynomial decay: ``lr = base_lr * (1 - min(t, total_iters) / total_iters) ** power``.

    torch's ``PolynomialLR`` with one difference: ``total_iters`` left out means "to the end of the run" (torch's
    default of 5 steps makes no sense for a per-step callback). ``power=1`` is a linear decay to 0.

    With ``end_lr`` (absolute) the decay ends there instead of at 0 and holds it:
    ``lr = end_lr + (base_lr - end_lr) * (1 - t / T) ** power``, Hugging Face's
    ``get_polynomial_decay_schedule_with_warmup`` ``lr_end`` and timm's ``PolyLRScheduler`` ``lr_min``; ``k_decay``
    is timm's k-decay, ``t**k / T**k`` in place of ``t / T``.

    Args:
        total_iters: units over which the LR decays to 0; default: the rest of the run after ``start``.
        power: the exponent, ``> 0``.
        interval: ``"step"`` (default) or ``"epoch"``.
        start: units to wait before the decay starts (``"after_warmup"``: when the Warmup ends).
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone. A length left out then spans ``start`` to ``end``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.
        end_lr: the LR the decay ends at and holds, absolute, ``>= 0`` and below each group's LR: one value, or one
            per param group. Default 0.
        k_decay: timm's ``k``, ``> 0`` (default 1: torch's and Hugging Face's decay).

    Raises:
        MisconfigurationException: for ``power <= 0``, a negative ``end_lr`` or one at or above a group's LR,
            ``k_decay <= 0``, or no ``total_iters`` in a run that has no end.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import PolynomialDecay, Warmup
        >>> trainer = Trainer(max_steps=10_000, callbacks=[Warmup(500), PolynomialDecay(power=1.0)])
    """

    group_independent = True

    def __init__(
        self,
        total_iters: Duration | None = None,
        power: float = 1.0,
        interval: Interval = "step",
        start: Duration | Literal["after_warmup"] = 0,
        optimizers: list[int] | None = None,
        end_lr: float | list[float] = 0.0,
        k_decay: float = 1.0,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        if total_iters is not None:
            check_duration_arg(total_iters, "PolynomialDecay.total_iters", allow_zero=False)
        check_positive(power, "power", "PolynomialDecay")
        for value in end_lr if isinstance(end_lr, (list, tuple)) else [end_lr]:
            check_positive(value, "end_lr", "PolynomialDecay", allow_zero=True)
        check_positive(k_decay, "k_decay", "PolynomialDecay")
        self.end_lr = list(end_lr) if isinstance(end_lr, (list, tuple)) else end_lr
        self.k_decay = float(k_decay)
        self._end_lrs: dict[int, list[float]] = {}
        # the new arguments join the config only when set: the state key of older checkpoints stays valid
        self._plain = self.end_lr == 0.0 and self.k_decay == 1.0
        # an absolute end LR makes the factor depend on each group's base LR
        self.group_independent = not any(self.end_lr) if isinstance(self.end_lr, list) else self.end_lr == 0.0
        if self.end_lr != 0.0:
            self._config["end_lr"] = self.end_lr
        if self.k_decay != 1.0:
            self._config["k_decay"] = self.k_decay
        if start != "after_warmup":
            check_duration_arg(start, "PolynomialDecay.start")
        self.total_iters = total_iters
        self.power = float(power)
        self.start = start
        self._lengths: dict[int, int] = {}
        self._config.update(total_iters=total_iters, power=self.power, start=start)

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._resolve_window(trainer, run, self.start)
        for index in range(len(trainer.optimizers)):
            if not self.targets(index):
                continue
            if self.total_iters is not None:
                length = self._duration(self.total_iters, run, "total_iters")
                end = self._start_units.get(index, 0) + length
                self._check_within_run(end - 1, run, "total_iters", "the decay would be cut off before it ends")
            else:
                remaining = self.remaining(run, index)
                if remaining is None:
                    raise ValueError(
                        "PolynomialDecay.total_iters is left out, so the decay would span the whole run, but the run "
                        "has no end: set `trainer.max_steps`/`trainer.max_epochs`, or give `total_iters`."
                    )
                length = remaining
            if length <= 0:
                raise ValueError(
                    f"PolynomialDecay resolves to a decay of {length} {self.interval}s: `start` leaves no room in "
                    "the run. Give a total_iters of at least 1."
                )
            self._lengths[index] = length

    def lint(self, run: RunLength) -> list[str]:
        if not self._lengths:
            return super().lint(run)
        index, length = next(iter(self._lengths.items()))
        return super().lint(run) + self._lint_ends_early(
            self._start_units.get(index, 0) + length, run, "is 0 and the model stops learning"
        )

    def resolve_groups(self, optimizer_index: int, optimizer: Optimizer) -> None:
        end_lrs = per_group(self.end_lr, len(optimizer.param_groups), "PolynomialDecay.end_lr")
        for group, end_lr in zip(optimizer.param_groups, end_lrs, strict=False):
            if end_lr > 0 and end_lr >= base_lr(group):
                raise ValueError(
                    f"PolynomialDecay.end_lr={end_lr} is not below the learning rate {base_lr(group)} of a param "
                    f"group of optimizer {optimizer_index}: the decay would go upwards. Use an end_lr below the LR."
                )
        self._end_lrs[optimizer_index] = end_lrs

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        t, total = self.units(progress, optimizer_index), self._lengths[optimizer_index]
        if self._plain:
            return polynomial_factor(t, total, self.power)
        end_lr = self._end_lrs[optimizer_index][group_index]
        return polynomial_end_factor(t, total, self.power, base_lr, end_lr, self.k_decay)
