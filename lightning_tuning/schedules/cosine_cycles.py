"""Cosine annealing in cycles, timm's ``CosineLRScheduler`` generalisation of SGDR.

Beyond torch's ``CosineAnnealingWarmRestarts``: a non-integer ``T_mult`` (timm ``cycle_mul``), a ``cycle_limit``
after which the LR holds ``eta_min``, a ``cycle_decay`` that scales each restart's peak, and timm's ``k_decay``
(Zhang et al. 2020, "k-decay"), which bends the cosine: ``cos(pi * t**k / T**k)``.
"""

from __future__ import annotations

import math


def cycle_position(t: float, t_0: float, t_mult: float) -> tuple[int, float, float]:
    """Which cycle step ``t`` is in: ``(i, t_cur, t_i)``, cycle ``i`` (0-based) of length ``t_0 * t_mult**i``.

    Cycle ``i`` starts at ``t_0 * (t_mult**i - 1) / (t_mult - 1)`` (``i * t_0`` for ``t_mult = 1``). timm finds ``i``
    with a floating-point log, which can round down at the exact start of a cycle (``t = 25`` for ``t_0 = 10``,
    ``t_mult = 1.5``); here the log's guess is checked against the cycle starts, so a restart is always a restart.
    Away from those boundaries the values are timm's, bit for bit.
    """
    if t_mult == 1:
        i = int(t // t_0)
        return i, t - t_0 * i, t_0
    if t <= 0:
        return 0, t, t_0
    i = math.floor(math.log(1 - t / t_0 * (1 - t_mult), t_mult))

    def start(k: int) -> float:
        return (1 - t_mult**k) / (1 - t_mult) * t_0

    while start(i + 1) <= t:
        i += 1
    while i > 0 and start(i) > t:
        i -= 1
    return i, t - start(i), t_mult**i * t_0


def cosine_cycles_lr(
    t: float,
    base_lr: float,
    t_0: float,
    t_mult: float = 1.0,
    eta_min: float = 0.0,
    cycle_limit: int | None = None,
    cycle_decay: float = 1.0,
    k_decay: float = 1.0,
) -> float:
    """The LR at progress ``t`` of cosine cycles; timm's ``CosineLRScheduler._get_lr`` after its warmup.

    In cycle ``i`` at ``t_cur`` of ``t_i``: ``eta_min + (peak_i - eta_min) * (1 + cos(pi * t_cur**k / t_i**k)) / 2``
    with ``peak_i = base_lr * cycle_decay**i``; from cycle ``cycle_limit`` on (``None``: never), ``eta_min``.
    ``t_mult`` an integer, ``cycle_decay = k_decay = 1`` and no limit is torch's ``CosineAnnealingWarmRestarts``.

    Args:
        t: units done (steps or epochs).
        base_lr: the peak of the first cycle.
        t_0: length of the first cycle, ``> 0``.
        t_mult: each cycle is ``t_mult`` times longer than the one before, ``>= 1`` (a float allowed).
        eta_min: the LR at the bottom of each cycle, absolute.
        cycle_limit: how many cycles run; ``None`` for no limit (timm's default is 1: a single cosine).
        cycle_decay: factor of each restart's peak (timm's ``cycle_decay``; ``gamma**i``).
        k_decay: timm's ``k``, ``> 0``.
    """
    i, t_cur, t_i = cycle_position(t, t_0, t_mult)
    if cycle_limit is not None and i >= cycle_limit:
        return eta_min
    peak = base_lr * cycle_decay**i
    phase = t_cur / t_i if k_decay == 1.0 else t_cur**k_decay / t_i**k_decay
    return eta_min + 0.5 * (peak - eta_min) * (1.0 + math.cos(math.pi * phase))


def cosine_cycles_length(t_0: float, t_mult: float, cycles: int) -> float:
    """The length of the first ``cycles`` cycles: where a schedule with ``cycle_limit=cycles`` reaches ``eta_min``."""
    if t_mult == 1:
        return t_0 * cycles
    return t_0 * (t_mult**cycles - 1) / (t_mult - 1)
