"""Durations written in optimizer steps, in epochs, or as a fraction of the run, resolved to schedule units."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, Union

Duration = Union[int, float, str]  # noqa: UP007 - a runtime alias, evaluated on Python 3.10
"""A length of training time.

* ``int``: units of the schedule's own ``interval`` (optimizer steps for ``interval="step"``, epochs for
  ``interval="epoch"``), exactly as torch's schedulers count ``step()`` calls.
* ``float`` in ``(0, 1]``: that fraction of the whole run, e.g. ``0.05``.
* ``str``: ``"500steps"`` (or ``"500 steps"``, ``"500step"``), ``"3epochs"`` (or ``"3ep"``), ``"5%"``.
"""

Interval = Literal["step", "epoch"]

_PATTERN = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>steps?|epochs?|ep|%)\s*$")


@dataclass(frozen=True)
class RunLength:
    """How long the run is, as the trainer sees it at the start of fit.

    Args:
        total_steps: optimizer steps of the whole run (``Trainer.estimated_stepping_batches``), or ``None`` when
            the run has no end (``max_steps=-1`` and ``max_epochs=-1``).
        steps_per_epoch: optimizer steps in one epoch (training batches divided by gradient accumulation, rounded
            up), or ``None`` when the training data has no length.
    """

    total_steps: int | None
    steps_per_epoch: int | None

    def total(self, interval: Interval) -> int | None:
        """The length of the run in units of ``interval``."""
        if interval == "step" or self.total_steps is None:
            return self.total_steps
        if self.steps_per_epoch is None:
            return None
        return math.ceil(self.total_steps / self.steps_per_epoch)


def resolve_duration(value: Duration, interval: Interval, run: RunLength | None, argument: str) -> int:
    """Turn a :data:`Duration` into a whole number of schedule units.

    Args:
        value: the duration as written in the config.
        interval: the unit the schedule counts in.
        run: the run's length; ``None`` when only plain integers can be resolved (no trainer yet).
        argument: the argument's name, used in error messages (e.g. ``"Warmup.length"``).

    Raises:
        ValueError: the value is not a duration, is not positive, or needs a run length that is unknown or unbounded.
    """
    allowed = (
        "an int (schedule units), a float in (0, 1] (fraction of the run), or a string like '500steps', '3epochs', '5%'"
    )
    if isinstance(value, bool):
        raise ValueError(f"`{argument}={value!r}` is not a duration: use {allowed}.")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"`{argument}={value}` must not be negative: use {allowed}.")
        return value
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise ValueError(
                f"`{argument}={value}`: a float duration is a fraction of the run and must lie in (0, 1]. "
                f"Write whole steps as an int instead, or use {allowed}."
            )
        return _fraction(value, interval, run, argument)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(f"`{argument}={value!r}` is not a duration: use {allowed}.")
        number, unit = float(match["number"]), match["unit"]
        if unit == "%":
            if not 0.0 < number <= 100.0:
                raise ValueError(f"`{argument}={value!r}`: a percentage must lie in (0, 100].")
            return _fraction(number / 100.0, interval, run, argument)
        if not number.is_integer():
            raise ValueError(f"`{argument}={value!r}`: steps and epochs must be whole numbers.")
        count = int(number)
        if unit.startswith("step"):
            if interval == "epoch":
                raise ValueError(
                    f"`{argument}={value!r}` counts optimizer steps, but this schedule has `interval='epoch'`: "
                    "write the duration in epochs (e.g. '3epochs') or set `interval='step'`."
                )
            return count
        if interval == "epoch":
            return count
        if run is None or run.steps_per_epoch is None:
            raise ValueError(
                f"`{argument}={value!r}` is written in epochs, but the training data has no length, so an epoch has "
                "no known number of steps: write the duration in steps."
            )
        return count * run.steps_per_epoch
    raise ValueError(f"`{argument}={value!r}` is not a duration: use {allowed}.")


def _fraction(fraction: float, interval: Interval, run: RunLength | None, argument: str) -> int:
    total = None if run is None else run.total(interval)
    if total is None:
        raise ValueError(
            f"`{argument}` is a fraction of the run ({fraction:g}), but the run has no end "
            "(`max_steps=-1` and `max_epochs=-1`): set `trainer.max_steps` or `trainer.max_epochs`, "
            "or write the duration in steps or epochs."
        )
    # a positive fraction of a short run is still at least one unit
    return max(1, round(fraction * total))


def check_duration(value: Duration, argument: str) -> None:
    """Check a duration's type and syntax without a run length (for ``__init__``); raises ``ValueError``."""
    probe = RunLength(total_steps=1_000_000, steps_per_epoch=1)
    resolve_duration(value, "step", probe, argument)
