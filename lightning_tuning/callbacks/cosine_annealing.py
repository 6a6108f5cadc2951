r"""
CosineAnnealing
===============

Anneal the learning rate along a half cosine to ``eta_min``, optionally with warm restarts (SGDR).
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch.optim import Optimizer

from lightning_tuning.callbacks._coordinator import base_lr
from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_duration_arg, check_positive, per_group
from lightning_tuning.schedules import Progress, RunLength, cosine_annealing_lr, cosine_warm_restarts_lr
from lightning_tuning.schedules.cosine_cycles import cosine_cycles_length, cosine_cycles_lr
from lightning_tuning.schedules.durations import Duration, Interval


class CosineAnnealing(LRScheduleCallback):
    r"""Cosine annealing: ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    With ``T_max`` it is torch's ``CosineAnnealingLR``, except that past ``T_max`` the LR stays at ``eta_min``
    instead of climbing back up. With ``T_0`` (and ``T_mult``) it is torch's ``CosineAnnealingWarmRestarts``.
    ``T_max`` left out means "to the end of the run" (after ``start``).

    Beyond torch, timm's ``CosineLRScheduler`` cycles: ``T_mult`` may be a float (timm ``cycle_mul``);
    ``cycle_limit`` cycles run, then the LR holds ``eta_min``; each restart's peak is ``cycle_decay**i`` times the
    base LR (cycle ``i``, from 0); and ``k_decay`` bends every cosine, ``cos(pi * t**k / T**k)`` (also with
    ``T_max``). With ``cycle_decay=1``, ``k_decay=1``, no ``cycle_limit`` and an integer ``T_mult`` it is torch's
    schedule exactly.

    Args:
        T_max: length of the half cosine (units of ``interval``, or ``"10epochs"``, ``"90%"``); default: the rest
            of the run.
        eta_min: the LR at the bottom of the cosine (absolute, as in torch): one value, or one per param group.
        T_0: length of the first cycle for warm restarts; excludes ``T_max``.
        T_mult: each cycle is ``T_mult`` times longer than the one before (a number ``>= 1``; a float is timm's
            ``cycle_mul``).
        interval: ``"step"`` (default) or ``"epoch"``.
        start: units to wait before the cosine starts (``"after_warmup"``: when the Warmup ends).
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone. A length left out then spans ``start`` to ``end``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.
        cycle_limit: with ``T_0``, the number of cycles (``>= 1``); after the last the LR holds ``eta_min``.
            Default: no limit.
        cycle_decay: with ``T_0``, the factor of each restart's peak, ``> 0`` (timm's ``cycle_decay``). Default 1.
        k_decay: timm's ``k``, ``> 0``. Default 1 (the plain cosine).

    Raises:
        MisconfigurationException: for ``T_max`` with ``T_0``, a negative ``eta_min``, ``T_mult < 1``, an
            ``eta_min`` above a group's LR, ``cycle_limit``/``cycle_decay``/``T_mult`` without ``T_0``, a
            ``cycle_limit < 1``, ``cycle_decay`` or ``k_decay`` not positive, or no ``T_max`` in a run that has no
            end.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import CosineAnnealing, Warmup
        >>> trainer = Trainer(max_epochs=20, callbacks=[Warmup("5%"), CosineAnnealing(start="after_warmup")])
    """

    def __init__(
        self,
        T_max: Duration | None = None,
        eta_min: float | list[float] = 0.0,
        T_0: Duration | None = None,
        T_mult: int | float = 1,
        interval: Interval = "step",
        start: Duration | Literal["after_warmup"] = 0,
        optimizers: list[int] | None = None,
        cycle_limit: int | None = None,
        cycle_decay: float = 1.0,
        k_decay: float = 1.0,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        if T_max is not None and T_0 is not None:
            raise MisconfigurationException(
                "CosineAnnealing: give either `T_max` (one half cosine) or `T_0` (warm restarts), not both."
            )
        if T_max is not None:
            check_duration_arg(T_max, "CosineAnnealing.T_max", allow_zero=False)
        if T_0 is not None:
            check_duration_arg(T_0, "CosineAnnealing.T_0", allow_zero=False)
        if isinstance(T_mult, bool) or not isinstance(T_mult, (int, float)) or not 1 <= T_mult < float("inf"):
            raise MisconfigurationException(
                f"CosineAnnealing: `T_mult={T_mult!r}` must be a number >= 1 (each cycle that many times longer)."
            )
        if cycle_limit is not None and (
            isinstance(cycle_limit, bool) or not isinstance(cycle_limit, int) or cycle_limit < 1
        ):
            raise MisconfigurationException(
                f"CosineAnnealing: `cycle_limit={cycle_limit!r}` must be an integer >= 1 (the number of cycles), "
                "or null for no limit."
            )
        check_positive(cycle_decay, "cycle_decay", "CosineAnnealing")
        check_positive(k_decay, "k_decay", "CosineAnnealing")
        restarts_only = {"T_mult": (T_mult, 1), "cycle_limit": (cycle_limit, None), "cycle_decay": (cycle_decay, 1.0)}
        given = [f"`{name}={value!r}`" for name, (value, default) in restarts_only.items() if value != default]
        if T_0 is None and given:
            raise MisconfigurationException(
                f"CosineAnnealing: {', '.join(given)} shape warm restarts, which need `T_0` (the first cycle's "
                "length): give T_0 instead of T_max, or leave them out."
            )
        for value in eta_min if isinstance(eta_min, list) else [eta_min]:
            check_positive(value, "eta_min", "CosineAnnealing", allow_zero=True)
        if start != "after_warmup":
            check_duration_arg(start, "CosineAnnealing.start")
        self.T_max = T_max
        self.eta_min = eta_min
        self.T_0 = T_0
        self.T_mult = T_mult
        self.start = start
        self._lengths: dict[int, int] = {}
        self._eta_mins: dict[int, list[float]] = {}
        self.cycle_limit = cycle_limit
        self.cycle_decay = float(cycle_decay)
        self.k_decay = float(k_decay)
        self._config.update(T_max=T_max, eta_min=eta_min, T_0=T_0, T_mult=T_mult, start=start)
        # the new arguments join the config only when set: the state key of older checkpoints stays valid
        extra = {
            "cycle_limit": (cycle_limit, None),
            "cycle_decay": (self.cycle_decay, 1.0),
            "k_decay": (self.k_decay, 1.0),
        }
        self._config.update({name: value for name, (value, default) in extra.items() if value != default})
        self._torch_form = isinstance(T_mult, int) and cycle_limit is None and cycle_decay == 1 and k_decay == 1

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._resolve_window(trainer, run, self.start)
        for index in range(len(trainer.optimizers)):
            if not self.targets(index):
                continue
            if self.T_0 is not None:
                length = self._duration(self.T_0, run, "T_0")
            elif self.T_max is not None:
                length = self._duration(self.T_max, run, "T_max")
            else:
                remaining = self.remaining(run, index)
                if remaining is None:
                    raise ValueError(
                        "CosineAnnealing.T_max is left out, so the cosine would span the whole run, but the run has "
                        "no end: set `trainer.max_steps`/`trainer.max_epochs`, or give `T_max`."
                    )
                length = remaining
            if length <= 0:
                raise ValueError(
                    f"CosineAnnealing resolves to a cosine of {length} {self.interval}s: `start` leaves no room in "
                    "the run, or T_max/T_0 is too short. Give a T_max of at least 1."
                )
            self._lengths[index] = length
            if self.T_0 is not None:
                self._check_within_run(
                    self._start_units.get(index, 0) + length, run, "T_0", "the first restart would never come"
                )
            elif self.T_max is not None:
                end = self._start_units.get(index, 0) + length
                self._check_within_run(end - 1, run, "T_max", "the cosine would be cut off before reaching eta_min")

    def resolve_groups(self, optimizer_index: int, optimizer: Optimizer) -> None:
        eta_mins = per_group(self.eta_min, len(optimizer.param_groups), "CosineAnnealing.eta_min")
        for group, eta_min in zip(optimizer.param_groups, eta_mins, strict=False):
            if eta_min > base_lr(group):
                raise ValueError(
                    f"CosineAnnealing.eta_min={eta_min} is above the learning rate {base_lr(group)} of a param "
                    f"group of optimizer {optimizer_index}: the cosine would anneal upwards. Use an eta_min below "
                    "the LR."
                )
        self._eta_mins[optimizer_index] = eta_mins
        # with eta_min 0 the factor is the cosine alone, the same for every group
        self.group_independent = all(value == 0 for values in self._eta_mins.values() for value in values)

    def lint(self, run: RunLength) -> list[str]:
        if self.T_0 is not None or not self._lengths:
            return super().lint(run) + self._lint_cycles(run)
        index, length = next(iter(self._lengths.items()))
        return super().lint(run) + self._lint_ends_early(
            self._start_units.get(index, 0) + length, run, "stays at eta_min"
        )

    def _lint_cycles(self, run: RunLength) -> list[str]:
        if self.T_0 is None or self.cycle_limit is None or not self._lengths:
            return []
        index, length = next(iter(self._lengths.items()))
        end = self._start_units.get(index, 0) + cosine_cycles_length(length, self.T_mult, self.cycle_limit)
        return self._lint_ends_early(int(end), run, f"stays at eta_min after the {self.cycle_limit} cycle(s)")

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        t = self.units(progress, optimizer_index)
        eta_min = self._eta_mins[optimizer_index][group_index]
        length = self._lengths[optimizer_index]
        if not self._torch_form:
            if self.T_0 is None:  # one cosine, bent by k_decay
                return cosine_cycles_lr(t, base_lr, length, 1, eta_min, cycle_limit=1, k_decay=self.k_decay) / base_lr
            lr = cosine_cycles_lr(
                t, base_lr, length, self.T_mult, eta_min, self.cycle_limit, self.cycle_decay, self.k_decay
            )
            return lr / base_lr
        if self.T_0 is not None:
            return cosine_warm_restarts_lr(t, base_lr, length, int(self.T_mult), eta_min) / base_lr
        return cosine_annealing_lr(t, base_lr, length, eta_min) / base_lr
