"""Cyclical learning rates (Smith, 2017) with the exact semantics of torch's ``CyclicLR``."""

from __future__ import annotations

import math
from typing import Literal

CyclicMode = Literal["triangular", "triangular2", "exp_range"]


def _position(t: int, step_size_up: float, step_size_down: float) -> tuple[int, float]:
    total = step_size_up + step_size_down
    ratio = step_size_up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    return cycle, height


def _scale(t: int, cycle: int, mode: CyclicMode, gamma: float) -> float:
    if mode == "triangular":
        return 1.0
    if mode == "triangular2":
        return 1.0 / (2.0 ** (cycle - 1))
    return gamma**t


def cyclic_lr(
    t: int, base_lr: float, max_lr: float, step_size_up: float, step_size_down: float, mode: CyclicMode, gamma: float
) -> float:
    """The learning rate at iteration ``t``: ``base + (max - base) * height * scale``."""
    cycle, height = _position(t, step_size_up, step_size_down)
    return base_lr + (max_lr - base_lr) * height * _scale(t, cycle, mode, gamma)


def cyclic_momentum(
    t: int,
    base_momentum: float,
    max_momentum: float,
    step_size_up: float,
    step_size_down: float,
    mode: CyclicMode,
    gamma: float,
) -> float:
    """Momentum cycled inversely to the learning rate: ``max_m - (max_m - base_m) * height * scale``."""
    cycle, height = _position(t, step_size_up, step_size_down)
    return max_momentum - (max_momentum - base_momentum) * height * _scale(t, cycle, mode, gamma)
