"""Reduce-on-plateau bookkeeping with the exact decision rule of torch's ``ReduceLROnPlateau``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

PlateauMode = Literal["min", "max"]
ThresholdMode = Literal["rel", "abs"]


class PlateauTracker:
    """Decides after each validation whether the monitored value stopped improving, and keeps the LR scales.

    The LR of group ``g`` on the plateau's own track is ``base_lr[g] * scale[g]``; each reduction replaces it by
    ``max(lr * factor, min_lr[g])`` when that lowers it by more than ``eps`` (torch's rule). A non-finite value is
    never an improvement: it counts as a bad epoch.

    Args:
        mode: ``"min"`` when lower is better, ``"max"`` when higher is better.
        factor: multiplier applied at each reduction, in ``(0, 1)``.
        patience: bad validations tolerated before a reduction.
        threshold: how much better a value must be to count as an improvement.
        threshold_mode: ``"rel"`` (relative to the best) or ``"abs"``.
        cooldown: validations to wait after a reduction before counting bad ones again.
    """

    def __init__(
        self,
        mode: PlateauMode,
        factor: float,
        patience: int,
        threshold: float,
        threshold_mode: ThresholdMode,
        cooldown: int,
    ) -> None:
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.scales: list[float] = []
        self.num_reductions = 0

    def is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "min" and self.threshold_mode == "rel":
            return value < self.best * (1.0 - self.threshold)
        if self.mode == "min":
            return value < self.best - self.threshold
        if self.threshold_mode == "rel":
            return value > self.best * (self.threshold + 1.0)
        return value > self.best + self.threshold

    def update(self, value: float, base_lrs: Sequence[float], min_lrs: Sequence[float], eps: float) -> bool:
        """Record one validation result; returns whether the learning rate was reduced."""
        if len(self.scales) != len(base_lrs):
            self.scales = [1.0] * len(base_lrs)
        if self.is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs <= self.patience:
            return False
        reduced = False
        for group, (base_lr, min_lr) in enumerate(zip(base_lrs, min_lrs, strict=False)):
            old_lr = base_lr * self.scales[group]
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > eps:
                self.scales[group] = new_lr / base_lr
                reduced = True
        self.cooldown_counter = self.cooldown
        self.num_bad_epochs = 0
        self.num_reductions += reduced
        return reduced

    def scale(self, group: int) -> float:
        return self.scales[group] if group < len(self.scales) else 1.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
            "scales": list(self.scales),
            "num_reductions": self.num_reductions,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.scales = [float(s) for s in state["scales"]]
        self.num_reductions = int(state.get("num_reductions", 0))
