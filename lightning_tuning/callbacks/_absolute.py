"""What CyclicLR and OneCycle share: an absolute (possibly ``"auto"``) LR and momentum cycling."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch.optim import Optimizer

from lightning_tuning.callbacks._schedule import (
    LRScheduleCallback,
    auto_lrs,
    check_positive,
    momentum_key,
    per_group,
    range_test_of,
)


class AbsoluteLRSchedule(LRScheduleCallback):
    """A schedule that states LRs in absolute terms (torch's CyclicLR/OneCycleLR) and may cycle momentum.

    Its factor is ``its_lr / base_lr``, so used alone the optimizer sees exactly torch's LR; with a warmup or a
    plateau decay the factors multiply. ``max_lr="auto"`` takes the LR range test's suggestion (per group, keeping
    the groups' ratios); the resolved value is stored in the checkpoint so a resumed run does not need the test.
    """

    def _init_absolute(
        self, max_lr: float | list[float] | str, cycle_momentum: bool, base_momentum: Any, max_momentum: Any
    ) -> None:
        name = type(self).__name__
        if max_lr != "auto":
            for value in max_lr if isinstance(max_lr, list) else [max_lr]:
                check_positive(value, "max_lr", name)  # type: ignore[arg-type]  # a str is refused there
        for argument, values in (("base_momentum", base_momentum), ("max_momentum", max_momentum)):
            for value in values if isinstance(values, list) else [values]:
                check_positive(value, argument, name, allow_zero=True)
                if value >= 1:
                    raise MisconfigurationException(
                        f"{name}: `{argument}={value!r}` must lie in [0, 1): it is written as SGD's momentum or "
                        "Adam's beta1, and 1 or more makes the update grow without bound. Typical values: "
                        "0.85 to 0.95."
                    )
        self.max_lr = max_lr
        self.cycle_momentum = bool(cycle_momentum)
        self.cycles_momentum = self.cycle_momentum
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self._max_lrs: dict[int, list[float]] = {}
        self._momenta: dict[int, tuple[list[float], list[float]]] = {}
        self._range_test: Any | None = None
        self._targeted: set[int] = set()
        self._config.update(
            max_lr=max_lr, cycle_momentum=self.cycle_momentum, base_momentum=base_momentum, max_momentum=max_momentum
        )

    def _resolve_absolute(self, trainer: pl.Trainer) -> None:
        name = type(self).__name__
        self._range_test = range_test_of(trainer)
        self._targeted = {index for index in range(len(trainer.optimizers)) if self.targets(index)}
        if self.max_lr == "auto" and not self._max_lrs and self._range_test is None:
            raise ValueError(
                f"{name}.max_lr='auto' takes the LR range test's suggestion, but no lightning_tuning.LRRangeTest "
                "callback is configured: add one to `trainer.callbacks`, or give max_lr a number."
            )
        for index, optimizer in enumerate(trainer.optimizers):
            if self.targets(index) and self.cycle_momentum and momentum_key(optimizer) is None:
                raise ValueError(
                    f"{name}.cycle_momentum=True, but optimizer {index} ({type(optimizer).__name__}) has neither "
                    "`momentum` nor `betas`: set cycle_momentum=False."
                )

    def _resolve_absolute_groups(self, optimizer_index: int, optimizer: Optimizer) -> None:
        name = type(self).__name__
        groups = len(optimizer.param_groups)
        if self.max_lr != "auto":
            self._max_lrs[optimizer_index] = per_group(self.max_lr, groups, f"{name}.max_lr")  # type: ignore[arg-type]
        elif optimizer_index in self._max_lrs and len(self._max_lrs[optimizer_index]) < groups:
            raise ValueError(
                f"{name}.max_lr='auto' was resolved by the range test for {len(self._max_lrs[optimizer_index])} "
                f"param groups, and optimizer {optimizer_index} now has {groups}: give max_lr as a number to use it "
                "with param groups added during fit."
            )
        if self.cycle_momentum:
            base = per_group(self.base_momentum, groups, f"{name}.base_momentum")
            top = per_group(self.max_momentum, groups, f"{name}.max_momentum")
            if any(b > m for b, m in zip(base, top, strict=True)):
                raise ValueError(
                    f"{name}: base_momentum={self.base_momentum} is above max_momentum={self.max_momentum}; "
                    "momentum cycles between them, so base_momentum must be <= max_momentum."
                )
            self._momenta[optimizer_index] = (base, top)

    def max_lrs(self, optimizer_index: int) -> list[float]:
        if optimizer_index not in self._max_lrs:
            suggested = auto_lrs(self._range_test, optimizer_index)
            if suggested is None:
                raise RuntimeError(f"{type(self).__name__}.max_lr='auto' used before the range test suggested an LR.")
            self._max_lrs[optimizer_index] = suggested
            self._on_auto_resolved(optimizer_index)
        return self._max_lrs[optimizer_index]

    def _on_auto_resolved(self, optimizer_index: int) -> None:
        """Checks that need the resolved maximum LR (e.g. ``base_lr < max_lr``)."""

    def is_ready(self) -> bool:
        if self.max_lr != "auto":
            return True
        suggested = getattr(self._range_test, "suggested_lrs", None)
        return all(
            index in self._max_lrs or (isinstance(suggested, dict) and index in suggested) for index in self._targeted
        )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["max_lrs"] = {index: list(lrs) for index, lrs in self._max_lrs.items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self.max_lr == "auto":
            self._max_lrs = {int(k): [float(v) for v in lrs] for k, lrs in state_dict.get("max_lrs", {}).items()}
