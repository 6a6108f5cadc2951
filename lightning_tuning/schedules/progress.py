"""Where training stands, as the schedules see it."""

from __future__ import annotations

from typing import NamedTuple


class Progress(NamedTuple):
    """Training progress of one optimizer.

    Args:
        step: optimizer steps that really happened (a step a GradScaler skipped is not one).
        epoch: epochs completed (the current epoch's index).
    """

    step: int
    epoch: int
