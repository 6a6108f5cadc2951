"""The math of the LR range test, free of Lightning: the sweep, the smoothed loss, its falling stretch and the
suggestions.

Every suggestion is taken from the *falling stretch* of the smoothed loss: from the highest point before the minimum
(``top``) to the minimum (``bottom``). The rules, and the evidence behind them (least squares with full-batch SGD,
where a step diverges above ``2/h``, ``h`` the top Hessian eigenvalue; ``tests/test_range_test_rules.py``):

- On such problems the smoothed loss keeps falling well past ``2/h``: the unstable direction was already driven to
  almost nothing at lower LRs and takes several steps to grow back, and the moving average lags. Its minimum sits at
  6-8 x ``2/h``, the divergence stop at 8-12 x ``2/h``. So no rule may go near the minimum: every suggestion is at
  most :func:`ceiling` = the LR of the minimum / 10 (0.6-0.8 x ``2/h``).
- ``min_div_10``: that ceiling itself (the classic rule of thumb).
- ``steepest``: where the smoothed loss falls fastest per unit of log-LR, searched from the top of the fall up to the
  ceiling. Unbounded, on ill-conditioned problems it lands on the bulk of small eigenvalues at 2-4 x ``2/h``.
- ``valley``: the geometric middle between where the fall starts (the first point 10 % of the way down from the top)
  and the ceiling. It follows the problem (0.01-0.3 x ``2/h`` while ``h`` moved over four decades); fastai's rule
  (half-way along the longest decreasing run, which starts at the first point of the sweep) sat at 7e-4 x ``2/h`` on
  every problem, a fixed position in the sweep.

A curve without a clear fall (it drops less than 5 % of its level, or less than twice the noise that the raw loss's
batch-to-batch scatter leaves in the smoothed values, or over fewer than three points), or whose minimum is at the
start of the sweep, gets a :class:`RangeTestWarning` saying what to change, and :func:`suggest` then returns no
suggestion.
"""

from __future__ import annotations

import itertools
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

SweepMode = Literal["exponential", "linear"]
Suggestion = Literal["valley", "steepest", "min_div_10"]
SUGGESTIONS: tuple[str, ...] = ("valley", "steepest", "min_div_10")
#: the fall must drop at least this fraction of the loss level at its top
MIN_RELATIVE_DROP = 0.05
#: ... and at least this many standard deviations of the smoothed loss's noise (a one-sided 2.3 % test)
MIN_NOISE_MULTIPLE = 2.0
#: ... over at least this many sweep points
MIN_FALL_POINTS = 3
#: the ceiling is also at least this many sweep points before the minimum (coarse sweeps overshoot more per step)
CEILING_STEPS_BACK = 12
#: ``valley`` starts where the loss has come down this fraction of the whole fall
VALLEY_START_FRACTION = 0.1


class RangeTestWarning(UserWarning):
    """The range test's curve does not support a confident suggestion."""


@dataclass(frozen=True)
class Fall:
    """The falling stretch of a loss curve: indices ``top`` (the highest point before the minimum) to ``bottom``.

    ``problem`` says why the fall is not clear enough to suggest from (``None`` when it is), and what to change.
    """

    top: int
    bottom: int
    problem: str | None

    @property
    def clear(self) -> bool:
        return self.problem is None


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


def noise(raw_losses: Sequence[float]) -> float:
    """Batch-to-batch noise of the raw loss: the median absolute step-to-step change / (0.6745 * sqrt 2).

    The median ignores the divergence spike and a steady trend; for Gaussian noise it estimates its standard deviation.
    """
    if len(raw_losses) < 2:
        return 0.0
    changes = [abs(b - a) for a, b in itertools.pairwise(raw_losses)]
    return statistics.median(changes) / (0.6745 * math.sqrt(2))


def smoothed_noise(scatter: float, beta: float, index: int) -> float:
    """Standard deviation of :func:`smooth`'s value at ``index`` for independent losses of standard deviation
    ``scatter``: ``scatter * sqrt(sum of the squared EMA weights)``, the weights ``(1 - beta) beta^(index - k)`` over
    ``1 - beta^(index + 1)``. At the first point it is the raw loss's own noise; it falls with every point."""
    if beta == 0:
        return scatter
    weights = (1 - beta) ** 2 * (1 - beta ** (2 * (index + 1))) / ((1 - beta**2) * (1 - beta ** (index + 1)) ** 2)
    return scatter * math.sqrt(weights)


def falling_stretch(
    lrs: Sequence[float],
    losses: Sequence[float],
    raw_losses: Sequence[float] | None = None,
    smoothing: float = 0.98,
) -> Fall:
    """Where the (smoothed) loss falls: from its highest point before its minimum to the minimum.

    With ``raw_losses`` the minimum is where the smoothed loss plus twice its noise (:func:`smoothed_noise`) is
    lowest: the first points average few batches, and a lucky one must not pass for the minimum.

    Args:
        lrs: the swept LRs.
        losses: the smoothed loss at each LR.
        raw_losses: the unsmoothed losses, to compare the fall with their noise; ``None`` skips that check.
        smoothing: the ``beta`` that smoothed ``losses`` (how much of the raw noise is left in them).
    """
    _check_curve(lrs, losses)
    scatter = noise(raw_losses) if raw_losses is not None else 0.0
    # the minimum allowing for noise: a smoothed value of few batches (the first points) is only low if it is low
    # by more than its own noise, so one lucky first batch is not taken for the minimum
    bottom = min(
        range(len(losses)),
        key=lambda i: losses[i] + MIN_NOISE_MULTIPLE * smoothed_noise(scatter, smoothing, i),
    )
    top = max(range(bottom + 1), key=losses.__getitem__)
    level, drop = abs(losses[top]), losses[top] - losses[bottom]
    # the noise of the difference of two smoothed values (taken as independent: it errs on the side of caution)
    uncertainty = math.hypot(smoothed_noise(scatter, smoothing, top), smoothed_noise(scatter, smoothing, bottom))
    problem = None
    if bottom < MIN_FALL_POINTS - 1:
        problem = (
            f"the smoothed loss is lowest at the start of the sweep (point {bottom + 1} of {len(lrs)}, "
            f"lr={lrs[bottom]:.3g}) and only rises after it: the LR that trains best is at or below `min_lr`. "
            f"Lower `min_lr` (e.g. to {lrs[0] / 100:.3g})"
        )
    elif (
        bottom - top + 1 < MIN_FALL_POINTS
        or drop <= MIN_RELATIVE_DROP * level
        or drop <= MIN_NOISE_MULTIPLE * uncertainty
    ):
        detail = f" (noise of that difference: {uncertainty:.3g})" if raw_losses is not None else ""
        problem = (
            f"the smoothed loss has no clear fall: it goes from {losses[top]:.4g} at lr={lrs[top]:.3g} down to "
            f"{losses[bottom]:.4g} at lr={lrs[bottom]:.3g}{detail}. Sweep where the loss moves: lower `min_lr` or "
            "raise `max_lr`, and raise `num_steps` so that each LR trains long enough to show an effect"
        )
    return Fall(top, bottom, problem)


def ceiling(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The highest LR any rule suggests: the LR of the minimum / 10, and no later than 12 points before the minimum;
    never below the top of the fall nor above the minimum."""
    fall = falling_stretch(lrs, losses)
    return _ceiling(lrs, fall)


def min_div_10(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The LR of the lowest smoothed loss / 10 (the classic rule of thumb), kept inside the falling stretch."""
    fall = _warned_fall(lrs, losses)
    return _ceiling(lrs, fall)


def steepest(lrs: Sequence[float], losses: Sequence[float], skip_start: int = 0, skip_end: int = 0) -> float:
    """Where the smoothed loss falls fastest per unit of log-LR (central differences), from the top of the fall up
    to :func:`ceiling`; the first ``skip_start`` and last ``skip_end`` points are not candidates when others are."""
    if len(lrs) - skip_start - skip_end < 3:
        raise ValueError(f"the sweep has {len(lrs)} points; steepest descent needs {skip_start + skip_end + 3}")
    fall = _warned_fall(lrs, losses)
    return _steepest(lrs, losses, fall, skip_start, skip_end)


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The geometric middle of the useful part of the fall: from where the loss has come down 10 % of the way from
    the top of the fall, to :func:`ceiling`."""
    fall = _warned_fall(lrs, losses)
    return _valley(lrs, losses, fall)


def suggest(
    lrs: Sequence[float],
    smoothed: Sequence[float],
    skip_start: int = 0,
    skip_end: int = 0,
    raw_losses: Sequence[float] | None = None,
    smoothing: float = 0.98,
) -> dict[str, float]:
    """Every suggestion the sweep has enough points for; none (and one :class:`RangeTestWarning`) without a clear fall.

    Use :func:`falling_stretch` to get the reason as text instead of a warning.
    """
    if len(lrs) < MIN_FALL_POINTS:
        warnings.warn(
            f"the sweep has only {len(lrs)} points; no suggestion. Raise `num_steps`, or lower `max_lr` if the "
            "loss diverged right away",
            RangeTestWarning,
            stacklevel=2,
        )
        return {}
    fall = falling_stretch(lrs, smoothed, raw_losses, smoothing)
    if not fall.clear:
        warnings.warn(f"LR range test: {fall.problem}; no LR suggested.", RangeTestWarning, stacklevel=2)
        return {}
    suggestions = {"valley": _valley(lrs, smoothed, fall), "min_div_10": _ceiling(lrs, fall)}
    if len(lrs) - skip_start - skip_end >= 3:
        suggestions["steepest"] = _steepest(lrs, smoothed, fall, skip_start, skip_end)
    return suggestions


def _check_curve(lrs: Sequence[float], losses: Sequence[float]) -> None:
    if len(lrs) != len(losses):
        raise ValueError(f"{len(lrs)} LRs but {len(losses)} losses; give one loss per LR")
    if not lrs:
        raise ValueError("the sweep is empty: no LR and no loss to suggest from")
    if not all(math.isfinite(value) for value in losses):
        raise ValueError("the losses must be finite: cut the sweep before the first non-finite loss")


def _warned_fall(lrs: Sequence[float], losses: Sequence[float]) -> Fall:
    fall = falling_stretch(lrs, losses)
    if not fall.clear:
        warnings.warn(f"LR range test: {fall.problem}; this LR is not reliable.", RangeTestWarning, stacklevel=3)
    return fall


def _ceiling(lrs: Sequence[float], fall: Fall) -> float:
    below_minimum = min(lrs[fall.bottom] / 10, lrs[max(fall.bottom - CEILING_STEPS_BACK, 0)])
    return min(max(below_minimum, lrs[fall.top]), lrs[fall.bottom])


def _last_index_at_most(lrs: Sequence[float], fall: Fall, limit: float) -> int:
    """The last index of the fall whose LR is at most ``limit`` (the top of the fall if none is)."""
    index = fall.top
    for i in range(fall.top, fall.bottom + 1):
        if lrs[i] <= limit * (1 + 1e-12):
            index = i
    return index


def _steepest(lrs: Sequence[float], losses: Sequence[float], fall: Fall, skip_start: int, skip_end: int) -> float:
    cap = _ceiling(lrs, fall)
    last = _last_index_at_most(lrs, fall, cap)
    # central differences need a neighbour on each side; the ends of the sweep have none
    low, high = max(fall.top, 1), min(last, len(lrs) - 2)
    candidates = [i for i in range(low, high + 1) if skip_start <= i < len(lrs) - skip_end] or list(
        range(low, high + 1)
    )
    if not candidates:
        return cap
    best_index, best_slope = candidates[0], math.inf
    for i in candidates:
        run = _axis(lrs, i + 1) - _axis(lrs, i - 1)
        slope = (losses[i + 1] - losses[i - 1]) / run if run > 0 else math.inf
        if slope < best_slope:
            best_index, best_slope = i, slope
    return min(lrs[best_index], cap)


def _valley(lrs: Sequence[float], losses: Sequence[float], fall: Fall) -> float:
    cap = _ceiling(lrs, fall)
    drop = losses[fall.top] - losses[fall.bottom]
    threshold = losses[fall.top] - VALLEY_START_FRACTION * drop
    start = next(i for i in range(fall.top, fall.bottom + 1) if losses[i] <= threshold)
    low = min(lrs[start], cap)
    return math.sqrt(low * cap) if low > 0 else cap / 2


def _axis(lrs: Sequence[float], index: int) -> float:
    """Position on the LR axis used for slopes: log-LR (a linear sweep starting at 0 falls back to the LR)."""
    return math.log(lrs[index]) if lrs[index] > 0 else -math.inf
