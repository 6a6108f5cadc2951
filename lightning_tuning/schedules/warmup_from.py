"""Warmup from an absolute start LR (timm's ``warmup_lr_init``; Hugging Face and torch ``LinearLR`` start included).

The peers all ramp on the same clock: step ``t`` runs at ``start + (base - start) * t / N`` for ``t < N`` and at the
base LR from step ``N`` on, so the very first step runs at ``start`` itself (at LR 0 in Hugging Face). The pack's
``length`` counts the steps up to and including the first one at the full LR, so an ``N``-step peer warmup is
``length = N + 1`` here: step ``L - 1`` is the first at the full LR, as for the pack's relative warmup.
"""

from __future__ import annotations


def warmup_from_lr(t: int, length: int, base_lr: float, start_lr: float) -> float:
    """The LR of the step with index ``t`` (0-based) of a linear warmup from ``start_lr`` to ``base_lr``.

    ``start_lr + (base_lr - start_lr) * t / (L - 1)`` for ``t < L - 1``, then ``base_lr``.

    Args:
        t: optimizer steps (or epochs) done before this one.
        length: ``L``, the steps from the first (at ``start_lr``) to the first at ``base_lr``, both included;
            ``L <= 1`` is no warmup.
        base_lr: the LR the warmup reaches.
        start_lr: the LR of the first step, absolute (0 allowed).
    """
    end = length - 1
    if t >= end:
        return base_lr
    return start_lr + (base_lr - start_lr) * t / end


def warmup_from_factor(t: int, length: int, base_lr: float, start_lr: float) -> float:
    """:func:`warmup_from_lr` as a multiplier of ``base_lr`` (1 for a group whose base LR is 0)."""
    if base_lr == 0:
        return 1.0
    return warmup_from_lr(t, length, base_lr, start_lr) / base_lr


def start_lr_for_factor(start_factor: float, base_lr: float) -> float:
    """torch ``LinearLR(start_factor=s)`` starts a group at ``s * base_lr``: its ``start_lr`` for this pack."""
    return start_factor * base_lr
