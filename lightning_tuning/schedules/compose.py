"""The one rule by which several schedules make one learning rate."""

from __future__ import annotations

from collections.abc import Iterable


def compose_lr(base_lr: float, factors: Iterable[float], floors: Iterable[tuple[float, float]] = ()) -> float:
    """Combine schedules into the learning rate the optimizer sees.

    ``lr = base_lr * prod(factors)``: every schedule contributes a factor of the group's base LR, so the result
    does not depend on the order of the callbacks. Absolute schedules (CyclicLR, OneCycle, eta_min of cosine)
    contribute ``their_lr / base_lr``.

    Plateau decays come last, as ``(scale, min_lr)`` pairs: the scale multiplies the LR, but a reduction never
    takes it below ``min_lr`` (nor raises an LR that other schedules already hold below ``min_lr``, e.g. during
    warmup): ``lr = max(lr * scale, min(min_lr, lr))``.
    """
    lr = base_lr
    for factor in factors:
        lr *= factor
    for scale, min_lr in floors:
        lr = max(lr * scale, min(min_lr, lr))
    return lr
