r"""
OneCycle
========

One cycle of learning rate up then down, with momentum down then up (Smith & Topin, 2018): torch's
``OneCycleLR`` as a callback.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch.optim import Optimizer

from lightning_tuning.callbacks._absolute import AbsoluteLRSchedule
from lightning_tuning.callbacks._schedule import check_duration_arg, check_positive
from lightning_tuning.schedules import OneCyclePhases, Progress, RunLength, one_cycle_lr, one_cycle_momentum
from lightning_tuning.schedules.durations import Duration, Interval
from lightning_tuning.schedules.one_cycle import AnnealStrategy


class OneCycle(AbsoluteLRSchedule):
    r"""The one-cycle policy: from ``max_lr / div_factor`` up to ``max_lr``, then down to a tiny LR.

    Same arguments, meanings and defaults as ``torch.optim.lr_scheduler.OneCycleLR``, with two differences:
    ``total_steps`` left out means the whole run (``Trainer.estimated_stepping_batches``: no more
    ``epochs``/``steps_per_epoch`` arithmetic, though both are accepted), and past the end the LR holds its final
    value instead of raising. ``max_lr="auto"`` takes the suggestion of an ``LRRangeTest``.

    Args:
        max_lr: the peak LR, one value or one per param group, or ``"auto"``.
        total_steps: length of the cycle (units of ``interval``, or a duration); default: the whole run.
        epochs: with ``steps_per_epoch``, torch's other way to give ``total_steps``.
        steps_per_epoch: see ``epochs``.
        pct_start: fraction of the cycle spent rising, in ``(0, 1)``.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        cycle_momentum: cycle momentum (or Adam's beta1) inversely to the LR.
        base_momentum: the momentum at the LR peak.
        max_momentum: the momentum at the start and end.
        div_factor: the cycle starts at ``max_lr / div_factor``.
        final_div_factor: it ends at ``max_lr / div_factor / final_div_factor``.
        three_phase: rise, fall back to the start, then anneal to the end (fastai's original shape).
        interval: ``"step"`` (default; one-cycle is a per-step schedule) or ``"epoch"``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone. Its length, left out, then spans the run up to ``end``.

    Raises:
        MisconfigurationException: for ``pct_start`` outside ``(0, 1)``, non-positive factors or LRs, an unknown
            ``anneal_strategy``, a cycle longer than the run, no total in a run that has no end, or
            ``max_lr="auto"`` without an ``LRRangeTest``.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import OneCycle
        >>> trainer = Trainer(max_epochs=10, callbacks=[OneCycle(max_lr=0.01)])
    """

    def __init__(
        self,
        max_lr: float | list[float] | Literal["auto"],
        total_steps: Duration | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        interval: Interval = "step",
        optimizers: list[int] | None = None,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        if total_steps is not None:
            check_duration_arg(total_steps, "OneCycle.total_steps", allow_zero=False)
            if epochs is not None or steps_per_epoch is not None:
                raise MisconfigurationException(
                    "OneCycle: give `total_steps`, or `epochs` with `steps_per_epoch`, or neither (the whole run)."
                )
        if (epochs is None) != (steps_per_epoch is None):
            raise MisconfigurationException("OneCycle: `epochs` and `steps_per_epoch` go together; give both or none.")
        if epochs is not None:
            check_positive(epochs, "epochs", "OneCycle")
            check_positive(steps_per_epoch, "steps_per_epoch", "OneCycle")  # type: ignore[arg-type]
            total_steps = int(epochs) * int(steps_per_epoch)  # type: ignore[arg-type]
        if isinstance(pct_start, bool) or not isinstance(pct_start, (int, float)) or not 0 < pct_start < 1:
            raise MisconfigurationException(
                f"OneCycle: `pct_start={pct_start!r}` must lie in (0, 1): it is the fraction of the cycle spent rising."
            )
        if anneal_strategy not in ("cos", "linear"):
            raise MisconfigurationException(
                f"OneCycle: `anneal_strategy={anneal_strategy!r}` is not allowed; use 'cos' or 'linear'."
            )
        check_positive(div_factor, "div_factor", "OneCycle")
        check_positive(final_div_factor, "final_div_factor", "OneCycle")
        self._init_absolute(max_lr, cycle_momentum, base_momentum, max_momentum)
        self.total_steps = total_steps
        self.pct_start = float(pct_start)
        self.anneal_strategy: AnnealStrategy = anneal_strategy
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.three_phase = bool(three_phase)
        self._phases: dict[int, OneCyclePhases] = {}
        self._config.update(
            total_steps=total_steps,
            pct_start=self.pct_start,
            anneal_strategy=anneal_strategy,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
            three_phase=self.three_phase,
        )

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._resolve_absolute(trainer)
        self._resolve_end(trainer, run)
        self._phases.clear()
        for index in range(len(trainer.optimizers)):
            if self.targets(index):
                self._phases[index] = self._phases_for(run, index)

    def _phases_for(self, run: RunLength, optimizer_index: int) -> OneCyclePhases:
        total = self.span(run, optimizer_index)
        if self.total_steps is None:
            if total is None:
                raise ValueError(
                    "OneCycle.total_steps is left out, so the cycle would span the whole run, but the run has no "
                    "end: set `trainer.max_steps`/`trainer.max_epochs`, or give `total_steps`."
                )
            length = total
        else:
            length = self._duration(self.total_steps, run, "total_steps")
            if total is not None and length > total:
                where = "the run ends" if self.end is None else "its window closes"
                raise ValueError(
                    f"OneCycle.total_steps={self.total_steps!r} is {length} {self.interval}s but {where} after "
                    f"{total}: the cycle would be cut off before it anneals. Leave total_steps out to fit the run."
                )
        phases = OneCyclePhases(total_steps=length, pct_start=self.pct_start, three_phase=self.three_phase)
        ends = phases.ends()
        # the first phase starts at step 0, as the math does: a phase ending there would divide 0 by 0
        if any(later <= earlier for earlier, later in pairwise((0.0, *ends))):
            raise ValueError(
                f"OneCycle: a cycle of {length} {self.interval}s with pct_start={self.pct_start} leaves a phase with "
                "no steps; train longer or change pct_start."
            )
        return phases

    def resolve_groups(self, optimizer_index: int, optimizer: Optimizer) -> None:
        self._resolve_absolute_groups(optimizer_index, optimizer)

    def lint(self, run: RunLength) -> list[str]:
        notes = super().lint(run) + self._lint_per_step_schedule(run)
        if self._phases:
            index, phases = next(iter(self._phases.items()))
            length = self._start_units.get(index, 0) + phases.total_steps
            notes += self._lint_ends_early(length, run, "stays at max_lr / div_factor / final_div_factor")
        return notes

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        t = self.units(progress, optimizer_index)
        max_lr = self.max_lrs(optimizer_index)[group_index]
        phases = self._phases[optimizer_index]
        return one_cycle_lr(t, phases, max_lr, self.div_factor, self.final_div_factor, self.anneal_strategy) / base_lr

    def momentum(self, progress: Progress, optimizer_index: int, group_index: int) -> float | None:
        if not self.cycle_momentum:
            return None
        base, top = self._momenta[optimizer_index]
        t = self.units(progress, optimizer_index)
        return one_cycle_momentum(
            t, self._phases[optimizer_index], base[group_index], top[group_index], self.anneal_strategy
        )
