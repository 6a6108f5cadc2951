"""Closed-form decays with the semantics of torch's StepLR, MultiStepLR, ExponentialLR and PolynomialLR."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence


def step_factor(t: int, step_size: int, gamma: float) -> float:
    """``gamma ** (t // step_size)`` (torch ``StepLR``)."""
    return gamma ** (t // step_size)


def multi_step_factor(t: int, milestones: Sequence[int], gamma: float) -> float:
    """``gamma ** (number of milestones <= t)`` (torch ``MultiStepLR``); ``milestones`` sorted."""
    return gamma ** bisect_right(milestones, t)


def exponential_factor(t: int, gamma: float) -> float:
    """``gamma ** t`` (torch ``ExponentialLR``)."""
    return gamma**t


def polynomial_factor(t: int, total_iters: int, power: float) -> float:
    """``(1 - min(t, T) / T) ** power`` (torch ``PolynomialLR``): reaches 0 at ``T`` and stays there."""
    if total_iters <= 0:
        return 1.0
    return (1.0 - min(t, total_iters) / total_iters) ** power
