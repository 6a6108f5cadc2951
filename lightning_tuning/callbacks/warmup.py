r"""
Warmup
======

Raise the learning rate from a fraction of its value to the full value over the first steps of training.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch.optim import Optimizer

from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_duration_arg, check_positive, per_group
from lightning_tuning.schedules import Progress, RunLength, untuned_warmup_length, warmup_end, warmup_factor
from lightning_tuning.schedules.durations import Interval
from lightning_tuning.schedules.warmup import WarmupKind
from lightning_tuning.schedules.warmup_from import warmup_from_factor

_DEFAULT_START = {"linear": 0.0, "exponential": 0.0, "constant": 0.1}


class Warmup(LRScheduleCallback):
    r"""Multiply the learning rate by a factor rising to 1 over the first ``length`` steps.

    Combines with every other schedule of this package by multiplication (see ``compose_lr``):
    after the warmup, the LR is exactly what the other schedules say. Put it in front of a cosine, step or plateau
    decay; the order in ``callbacks`` does not matter.

    Kinds (``t`` = optimizer steps done, ``L`` = length, ``s`` = ``start_factor``):

    * ``linear``: ``s + (1 - s) * min(1, (t + 1) / L)``; the first step already moves (no step at LR 0) and
      step ``L - 1`` runs at the full LR.
    * ``exponential``: ``s + (1 - s) * (1 - exp(-(t + 1) / L))``, ``L`` the time constant; exactly 1 once within
      1e-3 of it (after about ``6.9 L`` steps).
    * ``constant``: ``s`` for the first ``L`` steps, then 1 (Goyal et al., 2017).

    With ``start_lr`` (``a``, absolute; linear only) the warmup runs on the peers' clock instead: step ``t`` runs at
    ``a + (base_lr - a) * t / L`` for ``t < L`` and at the full LR from step ``L`` on, so the first step runs at ``a``
    itself and ``L`` is the peer's own number: Hugging Face ``num_warmup_steps`` (``start_lr=0``), timm ``warmup_t``
    with ``warmup_lr_init=a``, torch ``LinearLR(start_factor=s, total_iters=L)`` with ``start_lr=[s * lr of each
    group]`` (``docs/schedules_mapping.md``). A schedule with ``start="after_warmup"`` starts at step ``L``.

    Args:
        length: how long the warmup lasts. An ``int`` counts optimizer steps (epochs with ``interval="epoch"``);
            also ``"3epochs"``, ``"500steps"``, ``"5%"`` or a float fraction of the run; or ``"untuned"``: the
            rule of thumb from Adam's ``beta2`` (Ma & Yarats, 2019): ``2 / (1 - beta2)`` steps for linear,
            ``1 / (1 - beta2)`` for exponential (2000 and 1000 for the default ``beta2=0.999``).
        kind: ``"linear"``, ``"exponential"`` or ``"constant"``.
        start_factor: the multiplier the warmup starts from, in ``[0, 1)``. Default 0 (linear and exponential)
            or 0.1 (constant).
        start_lr: instead of ``start_factor``, the absolute LR of the first step (``>= 0``; 0 included, as Hugging
            Face starts): one value, or one per param group. Linear warmup only.
        interval: ``"step"`` (default) or ``"epoch"``: what one unit of ``length`` is.
        optimizers: indices of the optimizers to warm up; ``None`` (default) for all.
        exclusive: while the warmup runs, it alone sets the LR: the other schedules of the optimizer keep their own
            clocks (counted from step 0) but apply only from the warmup's end on; plateau reductions still apply.
            This is timm's ``warmup_prefix=False`` (its default): ``Warmup(W, start_lr=a, exclusive=True)`` with
            ``CosineAnnealing(T_max=T)``. Default ``False``: the warmup multiplies the other schedules.

    Raises:
        MisconfigurationException: at construction, for an unknown ``kind`` or a ``start_factor`` outside
            ``[0, 1)``; at the start of fit, for a length that is not positive or is as long as the run, or
            ``"untuned"`` with an optimizer that has no ``betas``.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import CosineAnnealing, Warmup
        >>> trainer = Trainer(callbacks=[Warmup(500), CosineAnnealing(start="after_warmup")])
    """

    group_independent = True

    is_warmup = True

    def __init__(
        self,
        length: int | float | str = "untuned",
        kind: Literal["linear", "exponential", "constant"] = "linear",
        start_factor: float | None = None,
        interval: Interval = "step",
        optimizers: list[int] | None = None,
        start_lr: float | list[float] | None = None,
        exclusive: bool = False,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        if start_lr is not None:
            if start_factor is not None:
                raise MisconfigurationException(
                    f"Warmup: give either `start_factor={start_factor!r}` (relative) or `start_lr={start_lr!r}` "
                    "(absolute), not both."
                )
            if kind != "linear":
                raise MisconfigurationException(
                    f"Warmup: `start_lr` is for kind='linear' (the peers' linear warmup), not kind={kind!r}; use "
                    "`start_factor` with that kind."
                )
            for value in start_lr if isinstance(start_lr, (list, tuple)) else [start_lr]:
                check_positive(value, "start_lr", "Warmup", allow_zero=True)
        if kind not in _DEFAULT_START:
            raise MisconfigurationException(
                f"Warmup: `kind={kind!r}` is not allowed; use one of {list(_DEFAULT_START)}."
            )
        if start_factor is None:
            start_factor = _DEFAULT_START[kind]
        if isinstance(start_factor, bool) or not isinstance(start_factor, (int, float)) or not 0 <= start_factor < 1:
            raise MisconfigurationException(
                f"Warmup: `start_factor={start_factor!r}` must lie in [0, 1): the warmup starts at that fraction "
                "of the learning rate and rises to 1."
            )
        if kind == "constant" and start_factor == 0:
            raise MisconfigurationException(
                "Warmup: `kind='constant'` with `start_factor=0` would train the first steps at LR 0; "
                "give a start_factor in (0, 1), e.g. 0.1."
            )
        if length == "untuned" and kind == "constant":
            raise MisconfigurationException(
                "Warmup: `length='untuned'` is defined for kind='linear' or 'exponential' only; "
                "give constant warmup an explicit length."
            )
        if length != "untuned":
            check_duration_arg(length, "Warmup.length")
        self.length = length
        self.kind: WarmupKind = kind
        self.start_factor = float(start_factor)
        self.start_lr = list(start_lr) if isinstance(start_lr, (list, tuple)) else start_lr
        self._lengths: dict[int, int] = {}
        self._start_lrs: dict[int, list[float]] = {}
        self._config.update(length=length, kind=kind, start_factor=self.start_factor)
        if start_lr is not None:  # only when given: the state key of older checkpoints stays valid
            self._config.update(start_lr=self.start_lr)
        # an absolute start LR makes the factor depend on each group's base LR
        self.group_independent = start_lr is None
        if not isinstance(exclusive, bool):
            raise MisconfigurationException(f"Warmup: `exclusive={exclusive!r}` must be true or false.")
        self.exclusive = exclusive
        if exclusive:  # only when set: the state key of older checkpoints stays valid
            self._config.update(exclusive=True)
        self._ends: dict[int, int] = {}

    def is_running(self, progress: Progress, optimizer_index: int) -> bool:
        """Whether the warmup's factor is still below 1 at ``progress`` for that optimizer."""
        end = self._ends.get(optimizer_index)
        return end is not None and self.units(progress, optimizer_index) < end

    def end_units(self, trainer: pl.Trainer, run: RunLength, optimizer_index: int) -> int:
        """The first unit at which this warmup's factor is exactly 1, for that optimizer."""
        return self._end(self._length_for(trainer, run, optimizer_index))

    def _end(self, length: int) -> int:
        return length if self.start_lr is not None else warmup_end(length, self.kind)

    def _length_for(self, trainer: pl.Trainer, run: RunLength, optimizer_index: int) -> int:
        if optimizer_index in self._lengths:
            return self._lengths[optimizer_index]
        optimizer = trainer.optimizers[optimizer_index]
        if self.length == "untuned":
            if "betas" not in optimizer.defaults:
                raise ValueError(
                    f"Warmup.length='untuned' takes its length from Adam's beta2, but optimizer {optimizer_index} "
                    f"is {type(optimizer).__name__}, which has no `betas`: give the warmup a length in steps."
                )
            if self.interval != "step":
                raise ValueError("Warmup.length='untuned' counts optimizer steps: use it with interval='step'.")
            length = untuned_warmup_length(float(optimizer.param_groups[0]["betas"][1]), self.kind)
        else:
            length = self._duration(self.length, run, "length")
        if length <= 0:
            raise ValueError(f"Warmup.length={self.length!r} resolves to {length} units; it must be at least 1.")
        total = run.total(self.interval)
        if total is not None and length >= total:
            raise ValueError(
                f"Warmup.length={self.length!r} is {length} {self.interval}s, but the whole run is {total} "
                f"{self.interval}s: the warmup would never finish. Shorten the warmup (e.g. '5%') or train longer."
            )
        self._lengths[optimizer_index] = length
        return length

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._lengths.clear()
        self._ends.clear()
        for index in range(len(trainer.optimizers)):
            if self.targets(index):
                self._ends[index] = self._end(self._length_for(trainer, run, index))

    def lint(self, run: RunLength) -> list[str]:
        notes = super().lint(run) + self._lint_per_step_schedule(run)
        total = run.total(self.interval)
        for index, length in self._lengths.items():
            if total and self._end(length) > total / 2:
                notes.append(
                    f"Warmup of optimizer {index} lasts {self._end(length)} of {total} {self.interval}s: "
                    "more than half the run is spent below the target LR."
                )
        return notes

    def resolve_groups(self, optimizer_index: int, optimizer: Optimizer) -> None:
        if self.start_lr is not None:
            self._start_lrs[optimizer_index] = per_group(self.start_lr, len(optimizer.param_groups), "Warmup.start_lr")

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        t = self.units(progress, optimizer_index)
        if t >= self._ends[optimizer_index]:  # most of a run: skip the formula (it gives exactly 1 there too)
            return 1.0
        if self.start_lr is not None:
            start_lr = self._start_lrs[optimizer_index][group_index]
            return warmup_from_factor(t, self._lengths[optimizer_index], base_lr, start_lr)
        return warmup_factor(t, self._lengths[optimizer_index], self.kind, self.start_factor)
