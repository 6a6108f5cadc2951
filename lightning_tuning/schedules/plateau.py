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

    def set_group_count(self, groups: int) -> None:
        """Follow the optimizer's param groups: a group added joins at scale 1; earlier reductions are kept.

        Raises:
            ValueError: the group count shrank (torch's ``ReduceLROnPlateau`` refuses that too).
        """
        if groups < len(self.scales):
            raise ValueError(
                f"PlateauDecay tracks {len(self.scales)} param groups but the optimizer now has {groups}: a removed "
                "group would silently shift every later group's reductions. Add param groups during fit, do not "
                "remove them."
            )
        self.scales.extend([1.0] * (groups - len(self.scales)))

    def update(self, value: float, current_lrs: Sequence[float], min_lrs: Sequence[float], eps: float) -> bool:
        """Record one validation result; returns whether the learning rate was reduced.

        ``current_lrs`` are the LRs the optimizer holds now, everything composed (torch's ``param_group["lr"]``):
        like torch, a reduction is skipped for a group once it would lower that LR by ``eps`` or less.
        """
        self.set_group_count(len(current_lrs))
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
        for group, (old_lr, min_lr) in enumerate(zip(current_lrs, min_lrs, strict=False)):
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > eps:
                # the composition floors the product at min_lr, so the scale itself may keep the factor
                self.scales[group] *= self.factor
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
