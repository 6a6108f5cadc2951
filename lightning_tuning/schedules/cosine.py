"""Cosine annealing (torch ``CosineAnnealingLR``) and cosine annealing with warm restarts (SGDR)."""

from __future__ import annotations

import math


def cosine_annealing_lr(t: int, base_lr: float, t_max: int, eta_min: float) -> float:
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``, held at ``eta_min`` for ``t >= T_max``.

    torch's recursive ``CosineAnnealingLR`` climbs back up after ``T_max``; a schedule that ended should not,
    so past the end the value stays at ``eta_min`` (use warm restarts to restart on purpose).
    """
    if t_max <= 0 or t >= t_max:
        return eta_min
    return eta_min + (base_lr - eta_min) * (1.0 + math.cos(math.pi * t / t_max)) / 2.0


def cosine_warm_restarts_lr(t: int, base_lr: float, t_0: int, t_mult: int, eta_min: float) -> float:
    """torch ``CosineAnnealingWarmRestarts`` stepped once per unit: the cycle restarts every ``T_0 * T_mult**i``."""
    if t_mult == 1:
        t_cur, t_i = t % t_0, t_0
    else:
        # Integer search rather than torch's float log: identical cycles, no rounding at cycle boundaries.
        t_cur, t_i = t, t_0
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= t_mult
    return eta_min + (base_lr - eta_min) * (1.0 + math.cos(math.pi * t_cur / t_i)) / 2.0
