r"""
CyclicLR
========

Cycle the learning rate between two bounds (Smith, 2017): torch's ``CyclicLR`` as a callback.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch.optim import Optimizer

from lightning_tuning.callbacks._absolute import AbsoluteLRSchedule
from lightning_tuning.callbacks._schedule import check_duration_arg, check_positive, per_group
from lightning_tuning.schedules import Progress, RunLength, cyclic_lr, cyclic_momentum
from lightning_tuning.schedules.cyclic import CyclicMode
from lightning_tuning.schedules.durations import Duration, Interval

_MODES = ("triangular", "triangular2", "exp_range")


class CyclicLR(AbsoluteLRSchedule):
    r"""Cyclical learning rate: the LR moves between ``base_lr`` and ``max_lr`` in triangles.

    Same arguments, meanings and defaults as ``torch.optim.lr_scheduler.CyclicLR`` (except ``scale_fn``, which a
    YAML config cannot hold: use ``mode``). ``base_lr`` and ``max_lr`` are absolute, one value or one per param
    group; used alone the optimizer sees exactly torch's LR. Momentum (or Adam's beta1) cycles inversely between
    ``max_momentum`` and ``base_momentum``. ``max_lr="auto"`` takes the suggestion of an ``LRRangeTest``.

    Args:
        base_lr: the lower bound of the cycle.
        max_lr: the upper bound (``"auto"``: from the range test).
        step_size_up: units in the rising half of a cycle (torch default 2000).
        step_size_down: units in the falling half; default ``step_size_up``.
        mode: ``"triangular"``, ``"triangular2"`` (amplitude halves each cycle) or ``"exp_range"``
            (amplitude ``gamma ** t``).
        gamma: the base of ``exp_range``, in ``(0, 1]``.
        scale_mode: accepted for parity with torch; like torch, the built-in modes fix it (``"cycle"`` for the
            triangles, ``"iterations"`` for ``exp_range``).
        cycle_momentum: cycle momentum inversely to the LR.
        base_momentum: the lower momentum bound (at the LR peak).
        max_momentum: the upper momentum bound (at the LR trough).
        interval: ``"step"`` (default) or ``"epoch"``.
        start: units to wait before the cycles start (``"after_warmup"``: when the Warmup ends).
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone. A length left out then spans ``start`` to ``end``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.

    Raises:
        MisconfigurationException: for an unknown ``mode``, non-positive bounds or step sizes, ``max_lr < base_lr``,
            ``gamma`` outside ``(0, 1]``, or ``cycle_momentum`` with an optimizer that has no momentum.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import CyclicLR
        >>> trainer = Trainer(callbacks=[CyclicLR(base_lr=0.001, max_lr=0.01, step_size_up=500, mode="triangular2")])
    """

    def __init__(
        self,
        base_lr: float | list[float],
        max_lr: float | list[float] | Literal["auto"],
        step_size_up: Duration = 2000,
        step_size_down: Duration | None = None,
        mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
        gamma: float = 1.0,
        scale_mode: Literal["cycle", "iterations"] = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.8,
        max_momentum: float | list[float] = 0.9,
        interval: Interval = "step",
        start: Duration | Literal["after_warmup"] = 0,
        optimizers: list[int] | None = None,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        if mode not in _MODES:
            raise MisconfigurationException(f"CyclicLR: `mode={mode!r}` is not allowed; use one of {list(_MODES)}.")
        if scale_mode not in ("cycle", "iterations"):
            raise MisconfigurationException(
                f"CyclicLR: `scale_mode={scale_mode!r}` is not allowed; use 'cycle' or 'iterations'."
            )
        for value in base_lr if isinstance(base_lr, list) else [base_lr]:
            check_positive(value, "base_lr", "CyclicLR")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
            raise MisconfigurationException(f"CyclicLR: `gamma={gamma!r}` must lie in (0, 1].")
        check_duration_arg(step_size_up, "CyclicLR.step_size_up", allow_zero=False)
        if step_size_down is not None:
            check_duration_arg(step_size_down, "CyclicLR.step_size_down", allow_zero=False)
        if start != "after_warmup":
            check_duration_arg(start, "CyclicLR.start")
        self._init_absolute(max_lr, cycle_momentum, base_momentum, max_momentum)
        if max_lr != "auto" and not isinstance(max_lr, list) and not isinstance(base_lr, list) and max_lr < base_lr:
            raise MisconfigurationException(
                f"CyclicLR: `max_lr={max_lr}` is below `base_lr={base_lr}`; the cycle goes from base_lr up to max_lr."
            )
        self.base_lr = base_lr
        self.step_size_up = step_size_up
        self.step_size_down = step_size_down
        self.mode: CyclicMode = mode
        self.gamma = float(gamma)
        self.scale_mode = scale_mode
        self.start = start
        self._base_lrs: dict[int, list[float]] = {}
        self._up = 1
        self._down = 1
        self._config.update(
            base_lr=base_lr, step_size_up=step_size_up, step_size_down=step_size_down, mode=mode, gamma=self.gamma
        )

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._resolve_window(trainer, run, self.start)
        self._resolve_absolute(trainer)
        self._up = self._duration(self.step_size_up, run, "step_size_up")
        self._down = self._up if self.step_size_down is None else self._duration(self.step_size_down, run, "down")
        if self._up <= 0 or self._down <= 0:
            raise ValueError(f"CyclicLR: the step sizes resolve to {self._up} and {self._down}; both must be >= 1.")
        first_turn = max(self._start_units.values(), default=0) + self._up
        self._check_within_run(first_turn, run, "step_size_up", "the LR would only ever rise")

    def resolve_groups(self, optimizer_index: int, optimizer: Optimizer) -> None:
        self._resolve_absolute_groups(optimizer_index, optimizer)
        groups = len(optimizer.param_groups)
        self._base_lrs[optimizer_index] = per_group(self.base_lr, groups, "CyclicLR.base_lr")
        if optimizer_index in self._max_lrs:
            self._check_bounds(optimizer_index)

    def _on_auto_resolved(self, optimizer_index: int) -> None:
        try:
            self._check_bounds(optimizer_index)
        except ValueError as err:
            raise MisconfigurationException(f"{err} (max_lr='auto' took the range test's suggestion)") from err

    def _check_bounds(self, optimizer_index: int) -> None:
        for low, high in zip(self._base_lrs[optimizer_index], self._max_lrs[optimizer_index], strict=False):
            if high < low:
                raise ValueError(
                    f"CyclicLR: max_lr={high:g} is below base_lr={low:g} for a param group of optimizer "
                    f"{optimizer_index}; the cycle goes from base_lr up to max_lr."
                )

    def lint(self, run: RunLength) -> list[str]:
        return super().lint(run) + self._lint_per_step_schedule(run)

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        t = self.units(progress, optimizer_index)
        low = self._base_lrs[optimizer_index][group_index]
        high = self.max_lrs(optimizer_index)[group_index]
        return cyclic_lr(t, low, high, self._up, self._down, self.mode, self.gamma) / base_lr

    def momentum(self, progress: Progress, optimizer_index: int, group_index: int) -> float | None:
        if not self.cycle_momentum:
            return None
        base, top = self._momenta[optimizer_index]
        t = self.units(progress, optimizer_index)
        return cyclic_momentum(t, base[group_index], top[group_index], self._up, self._down, self.mode, self.gamma)
