"""What CyclicLR and OneCycle share: an absolute (possibly ``"auto"``) LR and momentum cycling."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from lightning_tuning.callbacks._schedule import (
    LRScheduleCallback,
    auto_lrs,
    check_positive,
    has_range_test,
    momentum_key,
    per_group,
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
                check_positive(value, "max_lr", name)
        for value in base_momentum if isinstance(base_momentum, list) else [base_momentum]:
            check_positive(value, "base_momentum", name, allow_zero=True)
        for value in max_momentum if isinstance(max_momentum, list) else [max_momentum]:
            check_positive(value, "max_momentum", name, allow_zero=True)
        self.max_lr = max_lr
        self.cycle_momentum = bool(cycle_momentum)
        self.cycles_momentum = self.cycle_momentum
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self._max_lrs: dict[int, list[float]] = {}
        self._momenta: dict[int, tuple[list[float], list[float]]] = {}
        self._config.update(
            max_lr=max_lr, cycle_momentum=self.cycle_momentum, base_momentum=base_momentum, max_momentum=max_momentum
        )

    def _resolve_absolute(self, trainer: pl.Trainer) -> None:
        name = type(self).__name__
        if self.max_lr == "auto" and not self._max_lrs and not has_range_test(trainer):
            raise ValueError(
                f"{name}.max_lr='auto' takes the LR range test's suggestion, but no lightning_tuning.LRRangeTest "
                "callback is configured: add one to `trainer.callbacks`, or give max_lr a number."
            )
        for index, optimizer in enumerate(trainer.optimizers):
            if not self.targets(index):
                continue
            groups = len(optimizer.param_groups)
            if self.max_lr != "auto":
                self._max_lrs[index] = per_group(self.max_lr, groups, f"{name}.max_lr")
            if self.cycle_momentum:
                if momentum_key(optimizer) is None:
                    raise ValueError(
                        f"{name}.cycle_momentum=True, but optimizer {index} ({type(optimizer).__name__}) has neither "
                        "`momentum` nor `betas`: set cycle_momentum=False."
                    )
                base = per_group(self.base_momentum, groups, f"{name}.base_momentum")
                top = per_group(self.max_momentum, groups, f"{name}.max_momentum")
                if any(b > m for b, m in zip(base, top, strict=True)):
                    raise ValueError(
                        f"{name}: base_momentum={self.base_momentum} is above max_momentum={self.max_momentum}; "
                        "momentum cycles between them, so base_momentum must be <= max_momentum."
                    )
                self._momenta[index] = (base, top)

    def max_lrs(self, trainer: pl.Trainer, optimizer_index: int) -> list[float]:
        if optimizer_index not in self._max_lrs:
            suggested = auto_lrs(trainer, optimizer_index)
            if suggested is None:
                raise RuntimeError(f"{type(self).__name__}.max_lr='auto' used before the range test suggested an LR.")
            self._max_lrs[optimizer_index] = suggested
            self._on_auto_resolved(optimizer_index)
        return self._max_lrs[optimizer_index]

    def _on_auto_resolved(self, optimizer_index: int) -> None:
        """Checks that need the resolved maximum LR (e.g. ``base_lr < max_lr``)."""

    def is_ready(self, trainer: pl.Trainer) -> bool:
        if self.max_lr != "auto":
            return True
        return all(
            index in self._max_lrs or auto_lrs(trainer, index) is not None
            for index in range(len(trainer.optimizers))
            if self.targets(index)
        )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["max_lrs"] = {index: list(lrs) for index, lrs in self._max_lrs.items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self.max_lr == "auto":
            self._max_lrs = {int(k): [float(v) for v in lrs] for k, lrs in state_dict.get("max_lrs", {}).items()}
