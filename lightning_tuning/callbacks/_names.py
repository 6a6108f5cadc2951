"""Metric names for learning rates and momenta, exactly as Lightning's ``LearningRateMonitor`` writes them.

``lr-{Optimizer}`` for the first optimizer of a class, ``lr-{Optimizer}-{k}`` for the k-th repeat of that class,
then ``/pg{i}`` (1-based) per param group when there are several, or ``/{name}`` when the group has a ``name``.
Momentum goes under the same name with ``-momentum`` appended. Dashboards and scripts written for Lightning's monitor
therefore find the pack's values under the names they already use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def unwrap_optimizer(optimizer: Any) -> Any:
    """The torch optimizer inside a strategy wrapper (DeepSpeed, Lightning's ``LightningOptimizer``)."""
    while hasattr(optimizer, "optimizer") and hasattr(optimizer.optimizer, "param_groups"):
        optimizer = optimizer.optimizer
    return optimizer


def lr_names(optimizers: Sequence[Any]) -> list[list[str]]:
    """One LR metric name per param group of each optimizer, as ``LearningRateMonitor`` names them.

    Raises:
        ValueError: an optimizer has two param groups with the same ``name`` (Lightning refuses those too).
    """
    seen: Counter[type] = Counter()
    names: list[list[str]] = []
    for optimizer in map(unwrap_optimizer, optimizers):
        seen[type(optimizer)] += 1
        count = seen[type(optimizer)]
        base = f"lr-{type(optimizer).__name__}" + (f"-{count - 1}" if count > 1 else "")
        groups = optimizer.param_groups
        group_names = [group.get("name", f"pg{index}") for index, group in enumerate(groups, start=1)]
        duplicated = sorted({name for name in group_names if group_names.count(name) > 1})
        if duplicated:
            raise ValueError(
                f"{base} has several param groups named {duplicated}: give each param group a distinct `name`."
            )
        if len(groups) > 1:
            names.append([f"{base}/{name}" for name in group_names])
        else:
            name = groups[0].get("name") if groups else None
            names.append([f"{base}/{name}" if name else base])
    return names


def momentum_name(lr_name: str) -> str:
    """The momentum metric name that goes with an LR metric name (``LearningRateMonitor(log_momentum=True)``)."""
    return f"{lr_name}-momentum"
