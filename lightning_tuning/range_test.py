"""The math of the LR range test, free of Lightning: the sweep, the smoothed loss and the suggestions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

SweepMode = Literal["exponential", "linear"]
Suggestion = Literal["valley", "steepest", "min_div_10"]
SUGGESTIONS: tuple[str, ...] = ("valley", "steepest", "min_div_10")


def sweep_lrs(min_lr: float, max_lr: float, num_steps: int, mode: SweepMode) -> list[float]:
    """``num_steps`` learning rates from ``min_lr`` to ``max_lr`` inclusive, evenly spaced on a log or linear axis."""
    if num_steps == 1:
        return [min_lr]
    if mode == "exponential":
        ratio = math.log(max_lr / min_lr)
        return [min_lr * math.exp(ratio * i / (num_steps - 1)) for i in range(num_steps)]
    return [min_lr + (max_lr - min_lr) * i / (num_steps - 1) for i in range(num_steps)]


def smooth(losses: Sequence[float], beta: float) -> list[float]:
    """Exponential moving average with bias correction: ``avg_i / (1 - beta ** (i + 1))`` (fastai, Lightning)."""
    average, smoothed = 0.0, []
    for step, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (step + 1)))
    return smoothed


def steepest(lrs: Sequence[float], losses: Sequence[float], skip_start: int, skip_end: int) -> float:
    """The LR where the smoothed loss falls fastest per unit of log-LR (central differences)."""
    end = len(lrs) - skip_end
    if end - skip_start < 3:
        raise ValueError(f"the sweep has {len(lrs)} points; steepest descent needs {skip_start + skip_end + 3}")
    best_index, best_slope = skip_start + 1, math.inf
    for i in range(skip_start + 1, end - 1):
        slope = (losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
        if slope < best_slope:
            best_index, best_slope = i, slope
    return lrs[best_index]


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's "valley": the longest stretch over which the loss keeps decreasing, two thirds of the way down it.

    For each point, the length of the longest decreasing subsequence ending there; take the stretch of the longest
    one and return the LR ``start + int(len/3) + int(len/6)`` (fastai ``valley``).
    """
    n = len(losses)
    if n < 3:
        raise ValueError(f"the sweep has {n} points; the valley needs at least 3")
    run = [1] * n
    best_start, best_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[best_end] < run[i]:
            best_end = i
            best_start = best_end - run[best_end]
    sections = (best_end - best_start) / 3
    return lrs[best_start + int(sections) + int(sections / 2)]


def min_div_10(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The LR of the lowest smoothed loss, divided by 10 (the classic rule of thumb)."""
    index = min(range(len(losses)), key=losses.__getitem__)
    return lrs[index] / 10


def suggest(lrs: Sequence[float], smoothed: Sequence[float], skip_start: int, skip_end: int) -> dict[str, float]:
    """All suggestions that the sweep has enough points for."""
    suggestions: dict[str, float] = {}
    if len(lrs) >= 3:
        suggestions["valley"] = valley(lrs, smoothed)
        suggestions["min_div_10"] = min_div_10(lrs, smoothed)
    if len(lrs) - skip_start - skip_end >= 3:
        suggestions["steepest"] = steepest(lrs, smoothed, skip_start, skip_end)
    return suggestions
