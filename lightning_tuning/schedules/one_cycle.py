"""The one-cycle policy (Smith & Topin, 2018) with the exact phases of torch's ``OneCycleLR``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

AnnealStrategy = Literal["cos", "linear"]


def _anneal(start: float, end: float, pct: float, strategy: AnnealStrategy) -> float:
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


@dataclass(frozen=True)
class OneCyclePhases:
    """Phase boundaries (as step indices, possibly fractional like torch's) of a one-cycle schedule."""

    total_steps: int
    pct_start: float
    three_phase: bool

    def ends(self) -> tuple[float, ...]:
        warm_end = float(self.pct_start * self.total_steps) - 1
        if self.three_phase:
            return warm_end, float(2 * self.pct_start * self.total_steps) - 2, float(self.total_steps) - 1
        return warm_end, float(self.total_steps) - 1

    def locate(self, t: int) -> tuple[int, float]:
        """Which phase step ``t`` is in and how far through it (0..1); past the end, the end of the last phase."""
        t = min(t, self.total_steps - 1)
        start = 0.0
        ends = self.ends()
        for index, end in enumerate(ends):
            if t <= end or index == len(ends) - 1:
                return index, (t - start) / (end - start)
            start = end
        raise AssertionError("unreachable")


def one_cycle_lr(
    t: int, phases: OneCyclePhases, max_lr: float, div_factor: float, final_div_factor: float, strategy: AnnealStrategy
) -> float:
    """The learning rate at step ``t``: up from ``max/div`` to ``max``, then down to ``max/div/final_div``."""
    initial = max_lr / div_factor
    minimum = initial / final_div_factor
    points = (initial, max_lr, initial, minimum) if phases.three_phase else (initial, max_lr, minimum)
    index, pct = phases.locate(t)
    return _anneal(points[index], points[index + 1], pct, strategy)


def one_cycle_momentum(
    t: int, phases: OneCyclePhases, base_momentum: float, max_momentum: float, strategy: AnnealStrategy
) -> float:
    """Momentum moving inversely to the learning rate: ``max -> base -> max`` (three-phase: ``-> max -> max``)."""
    points = (
        (max_momentum, base_momentum, max_momentum, max_momentum)
        if phases.three_phase
        else (max_momentum, base_momentum, max_momentum)
    )
    index, pct = phases.locate(t)
    return _anneal(points[index], points[index + 1], pct, strategy)
