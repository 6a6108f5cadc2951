"""Polynomial decay to an end LR (Hugging Face ``lr_end``, timm ``lr_min``; torch ``PolynomialLR`` is ``end_lr=0``)."""

from __future__ import annotations


def polynomial_lr(t: int, total: int, power: float, base_lr: float, end_lr: float, k_decay: float = 1.0) -> float:
    """``end + (base - end) * (1 - min(t, T)**k / T**k) ** power``; ``end_lr`` from ``T`` on.

    * ``k_decay = 1`` (default): Hugging Face's ``get_polynomial_decay_schedule_with_warmup`` after its warmup (``t``
      counted from the end of the warmup, ``T = num_training_steps - num_warmup_steps``) and torch's
      ``PolynomialLR`` for ``end_lr = 0``.
    * ``k_decay != 1``: timm's ``PolyLRScheduler`` k-decay (Zhang et al. 2020), ``t**k / T**k`` as the progress.

    Args:
        t: steps (or epochs) of decay done before this one.
        total: ``T``, the length of the decay; ``T <= 0`` means no decay (``base_lr``).
        power: the exponent.
        base_lr: the LR at ``t = 0``.
        end_lr: the LR at and after ``t = T``, absolute.
        k_decay: timm's ``k``, ``> 0``.
    """
    if total <= 0:
        return base_lr
    if t >= total:
        return end_lr
    progress = t / total if k_decay == 1.0 else t**k_decay / total**k_decay
    return end_lr + (base_lr - end_lr) * (1.0 - progress) ** power


def polynomial_end_factor(
    t: int, total: int, power: float, base_lr: float, end_lr: float, k_decay: float = 1.0
) -> float:
    """:func:`polynomial_lr` as a multiplier of ``base_lr`` (1 for a group whose base LR is 0)."""
    if base_lr == 0:
        return 1.0
    return polynomial_lr(t, total, power, base_lr, end_lr, k_decay) / base_lr
