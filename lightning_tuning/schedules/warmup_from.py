"""Warmup from an absolute start LR (timm's ``warmup_lr_init``; Hugging Face's and torch ``LinearLR``'s clock).

The peers all ramp on one clock: step ``t`` runs at ``start + (base - start) * t / L`` for ``t < L`` and at the base
LR from step ``L`` on, so the very first step runs at ``start`` itself (at LR 0 in Hugging Face) and ``L`` counts the
steps below the peak. A warmup given by its start LR follows that clock here too, so ``L`` is the peer's number:
Hugging Face ``num_warmup_steps``, timm ``warmup_t``, torch ``LinearLR``'s ``total_iters``.

(The pack's relative warmup, ``start_factor``, rises with the same slope but one step earlier: its first step
already moves, ``s + (1 - s) / L``, and step ``L - 1`` runs at the full LR, the ``pytorch_warmup`` convention.)
"""

from __future__ import annotations


def warmup_from_lr(t: int, length: int, base_lr: float, start_lr: float) -> float:
    """The LR of the step with index ``t`` (0-based) of a linear warmup from ``start_lr`` to ``base_lr``.

    ``start_lr + (base_lr - start_lr) * t / L`` for ``t < L``, then ``base_lr``.

    Args:
        t: optimizer steps (or epochs) done before this one.
        length: ``L``, the steps below the peak; step ``L`` is the first at ``base_lr``. ``L <= 0`` is no warmup.
        base_lr: the LR the warmup reaches.
        start_lr: the LR of the first step, absolute (0 allowed).
    """
    if t >= length:
        return base_lr
    return start_lr + (base_lr - start_lr) * t / length


def warmup_from_factor(t: int, length: int, base_lr: float, start_lr: float) -> float:
    """:func:`warmup_from_lr` as a multiplier of ``base_lr`` (1 for a group whose base LR is 0)."""
    if base_lr == 0 or t >= length:
        return 1.0
    return warmup_from_lr(t, length, base_lr, start_lr) / base_lr


def start_factor_for_linear_lr(start_factor: float, total_iters: int) -> float:
    """The pack's relative ``start_factor`` that reproduces torch ``LinearLR(start_factor=s, total_iters=N)`` with
    ``Warmup(N + 1, start_factor=...)``: ``(s * (N + 1) - 1) / N``; negative (so not expressible) for
    ``s < 1 / (N + 1)``, where ``start_lr`` is the way."""
    return (start_factor * (total_iters + 1) - 1) / total_iters
