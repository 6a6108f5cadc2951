r"""
ScaleLR
=======

Scale the learning rates tuned at a reference batch size to the run's global batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.optim import Optimizer
from typing_extensions import override

from lightning_tuning.callbacks._names import unwrap_optimizer
from lightning_tuning.schedules.batch_scaling import (
    SCALE_RULES,
    batch_scale_factor,
    global_batch_size,
    resolve_rule,
)

SCALE_KEY = "lt_lr_scale"
"""Param-group key holding the factor ScaleLR applied (so a group is never scaled twice)."""


def check_optimizer_indices(owner: str, optimizers: list[int] | None) -> list[int] | None:
    if optimizers is not None and (
        not isinstance(optimizers, (list, tuple))
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in optimizers)
    ):
        raise MisconfigurationException(
            f"{owner}: `optimizers={optimizers!r}` must be a list of optimizer indices (0 for the first optimizer "
            "configure_optimizers returns), or null for all optimizers."
        )
    return None if optimizers is None else list(optimizers)


def targeted_optimizers(owner: str, trainer: pl.Trainer, optimizers: list[int] | None) -> list[tuple[int, Optimizer]]:
    """``(index, optimizer)`` of the optimizers a tool applies to; raises if an index is out of range."""
    found = [unwrap_optimizer(optimizer) for optimizer in trainer.optimizers]
    if optimizers is None:
        return list(enumerate(found))
    bad = [index for index in optimizers if index >= len(found)]
    if bad:
        raise MisconfigurationException(
            f"{owner}: `optimizers={optimizers}` names optimizer index {bad[0]}, but configure_optimizers returned "
            f"{len(found)} optimizer(s): use indices 0..{len(found) - 1}."
        )
    return [(index, found[index]) for index in optimizers]


def reject_torch_schedulers(owner: str, trainer: pl.Trainer, optimizers: Sequence[Optimizer], why: str) -> None:
    """A torch scheduler from ``configure_optimizers`` captured the LRs already; changing them under it breaks it."""
    for config in trainer.lr_scheduler_configs:
        scheduled = getattr(config.scheduler, "optimizer", None)
        if any(scheduled is optimizer for optimizer in optimizers):
            raise MisconfigurationException(
                f"{owner}: optimizer {type(scheduled).__name__} has a torch scheduler from configure_optimizers or "
                f"`--lr_scheduler` ({type(config.scheduler).__name__}), which captured its LRs when it was built; "
                f"{why}. Express the schedule as lightning_tuning callbacks (Warmup, CosineAnnealing, OneCycle, ...), "
                "or leave this optimizer out with `optimizers=[...]`."
            )


def per_device_batch_size(trainer: pl.Trainer, owner: str) -> int:
    """The training dataloader's batch size on one device (sets the training data up if it is not yet)."""
    if trainer.train_dataloader is None:
        _ = trainer.estimated_stepping_batches  # sets up the training data, as schedules do at the start of fit
    loaders = trainer.train_dataloader
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        sizes = {per_device_size_of(loader) for loader in loaders}
        size = sizes.pop() if len(sizes) == 1 else None
    else:
        size = per_device_size_of(loaders)
    if size is None:
        raise MisconfigurationException(
            f"{owner}: cannot read the per-device batch size from the training dataloader(s) (no `batch_size`, a "
            "batch sampler without one, or several loaders of different sizes): give it as `batch_size=...`."
        )
    return size


def per_device_size_of(loader: Any) -> int | None:
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    return int(size) if isinstance(size, int) and size > 0 else None


class ScaleLR(Callback):
    r"""Scale every param group's learning rate from a reference batch size to the run's global batch size.

    LRs from a paper or a sweep hold for the batch size they were tuned at. With ``B`` the run's global batch
    (per-device batch x devices x nodes x gradient accumulation, the same on every rank under DDP) and ``B_ref``
    the reference, the base LR of each group becomes ``lr * B / B_ref`` (``rule="linear"``, Goyal et al. 2017, for
    SGD) or ``lr * sqrt(B / B_ref)`` (``"sqrt"``, for Adam-like optimizers). ``"auto"`` (default) picks ``sqrt``
    for optimizers whose class name contains ``ada`` or ``lamb`` and ``linear`` otherwise (timm's convention).

    The scaling happens once, at the start of fit, before any schedule reads the base LRs, so every schedule and the
    LR range test start from the scaled values (a range test's suggestion replaces them, as it replaces any LR).
    On resume the LRs come back from the checkpoint as they were: nothing is scaled twice. The factor, the batch
    sizes and the rule are logged (``lr_scale/...`` metrics, and an info line) and saved in the checkpoint.

    Args:
        reference_batch_size: ``B_ref``, the global batch size the configured LRs were tuned at.
        rule: ``"linear"``, ``"sqrt"`` or ``"auto"``.
        batch_size: the per-device batch size; default: read from the training dataloader.
        optimizers: indices of the optimizers to scale; ``None`` (default) for all.

    Raises:
        MisconfigurationException: at construction, for a reference batch size that is not a positive int or an
            unknown rule; at the start of fit, when the batch size cannot be read from the dataloader, or an
            optimizer has a torch scheduler.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import ScaleLR, Warmup
        >>> trainer = Trainer(devices=1, accumulate_grad_batches=4, callbacks=[ScaleLR(256), Warmup("5%")])
    """

    def __init__(
        self,
        reference_batch_size: int,
        rule: Literal["linear", "sqrt", "auto"] = "auto",
        batch_size: int | None = None,
        optimizers: list[int] | None = None,
    ) -> None:
        for name, value in (("reference_batch_size", reference_batch_size), ("batch_size", batch_size)):
            if value is None and name == "batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise MisconfigurationException(
                    f"ScaleLR: `{name}={value!r}` must be a positive int (samples per optimizer step"
                    + (" over all devices)." if name == "reference_batch_size" else " on one device), or null.")
                )
        if rule not in SCALE_RULES:
            raise MisconfigurationException(
                f"ScaleLR: `rule={rule!r}` is not allowed; use one of {list(SCALE_RULES)} ('auto': sqrt for "
                "Adam-like optimizers, linear otherwise)."
            )
        self.reference_batch_size = reference_batch_size
        self.rule = rule
        self.batch_size = batch_size
        self.optimizers = check_optimizer_indices("ScaleLR", optimizers)
        self.global_batch_size: int | None = None
        self.factors: dict[int, float] = {}
        self.rules: dict[int, str] = {}
        self._saved: dict[str, Any] | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(optimizers=self.optimizers)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        targets = targeted_optimizers("ScaleLR", trainer, self.optimizers)
        reject_torch_schedulers(
            "ScaleLR", trainer, [optimizer for _, optimizer in targets], "scaling the LRs now would not reach it"
        )
        per_device = self.batch_size or per_device_batch_size(trainer, "ScaleLR")
        self.global_batch_size = global_batch_size(
            per_device, trainer.num_devices, trainer.num_nodes, max(1, trainer.accumulate_grad_batches)
        )
        self.factors.clear()
        self.rules.clear()
        for index, optimizer in targets:
            rule = resolve_rule(self.rule, type(optimizer).__name__)
            factor = batch_scale_factor(self.global_batch_size, self.reference_batch_size, rule)
            self.factors[index], self.rules[index] = factor, rule
            for group in optimizer.param_groups:
                applied = group.get(SCALE_KEY)
                if applied == factor:
                    continue  # this optimizer object was scaled by an earlier fit already
                change = factor / applied if applied else factor
                group["lr"] = group["lr"] * change
                if "lt_base_lr" in group:
                    group["lt_base_lr"] = group["lt_base_lr"] * change
                group[SCALE_KEY] = factor
        if self._saved is not None and self._saved.get("global_batch_size") != self.global_batch_size:
            rank_zero_warn(
                f"ScaleLR: the checkpoint was trained at a global batch size of {self._saved.get('global_batch_size')}"
                f" (LR factors {self._saved.get('factors')}), this run has {self.global_batch_size} (factors "
                f"{self.factors}). The checkpoint's learning rates are restored as they were (exact resume); to "
                "rescale them for the new batch size, start a new fit from the weights instead of resuming."
            )
        details = ", ".join(
            f"optimizer {index} ({type(optimizer).__name__}): x{self.factors[index]:.6g} ({self.rules[index]})"
            for index, optimizer in targets
        )
        rank_zero_info(
            f"ScaleLR: global batch size {self.global_batch_size} = {per_device} per device x {trainer.num_devices} "
            f"device(s) x {trainer.num_nodes} node(s) x {max(1, trainer.accumulate_grad_batches)} accumulation, "
            f"reference {self.reference_batch_size}: {details}."
        )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.loggers or self.global_batch_size is None:
            return
        metrics = {"lr_scale/global_batch_size": float(self.global_batch_size)}
        metrics.update({f"lr_scale/optimizer{index}": factor for index, factor in self.factors.items()})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "reference_batch_size": self.reference_batch_size,
            "rule": self.rule,
            "global_batch_size": self.global_batch_size,
            "factors": {str(index): factor for index, factor in self.factors.items()},
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = dict(state_dict)
