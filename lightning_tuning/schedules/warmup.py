"""Warmup: a factor that rises from ``start_factor`` to 1 over the first steps of training."""

from __future__ import annotations

import math
from typing import Literal

WarmupKind = Literal["linear", "exponential", "constant"]

EXPONENTIAL_TOLERANCE = 1e-3
"""Exponential warmup approaches 1 asymptotically; it is taken as finished once within this of 1."""


def warmup_factor(t: int, length: int, kind: WarmupKind, start_factor: float) -> float:
    """The warmup multiplier for the step with index ``t`` (0-based).

    * linear: ``s + (1 - s) * min(1, (t + 1) / L)``. The first step already gets ``s + (1 - s) / L`` (no step is
      wasted at LR 0) and step ``L - 1`` runs at the full LR (the ``pytorch_warmup`` convention).
    * exponential: ``s + (1 - s) * (1 - exp(-(t + 1) / L))`` with time constant ``L`` (Ma & Yarats, 2019),
      exactly 1 from :func:`warmup_end` on.
    * constant: ``s`` for ``t < L``, then 1 (Goyal et al., 2017).

    Args:
        t: optimizer steps (or epochs) done before this one.
        length: ``L``, the warmup length (the time constant for exponential warmup).
        kind: the warmup shape.
        start_factor: ``s``, the multiplier the warmup starts from.
    """
    if t >= warmup_end(length, kind):
        return 1.0
    if kind == "linear":
        return start_factor + (1.0 - start_factor) * (t + 1) / length
    if kind == "exponential":
        return start_factor + (1.0 - start_factor) * -math.expm1(-(t + 1) / length)
    return start_factor


def warmup_end(length: int, kind: WarmupKind) -> int:
    """The first step index at which the warmup factor is exactly 1."""
    if length <= 0:
        return 0
    if kind == "exponential":
        return math.ceil(length * math.log(1.0 / EXPONENTIAL_TOLERANCE)) - 1
    if kind == "linear":
        return length - 1
    return length


def untuned_warmup_length(beta2: float, kind: WarmupKind) -> int:
    """Ma & Yarats (2019) rule of thumb for Adam: ``2 / (1 - beta2)`` steps linear, ``1 / (1 - beta2)`` exponential.

    Raises:
        ValueError: ``beta2`` is outside ``[0, 1)`` or ``kind`` is constant (the rule does not define it).
    """
    if not 0.0 <= beta2 < 1.0:
        raise ValueError(f"untuned warmup needs Adam's beta2 in [0, 1), got {beta2}.")
    if kind == "linear":
        return round(2.0 / (1.0 - beta2))
    if kind == "exponential":
        return round(1.0 / (1.0 - beta2))
    raise ValueError("untuned warmup length is defined for kind='linear' or 'exponential', not 'constant'.")
