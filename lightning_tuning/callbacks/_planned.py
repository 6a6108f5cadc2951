"""The planned LR curve of a whole run, computed without training: what ``preview`` prints and the dashboard logs.

Pure evaluation: the pack's schedules are evaluated through the coordinator's composition (nothing is written into
the optimizers); a torch scheduler returned by ``configure_optimizers`` is stepped on a copy bound to a stand-in
optimizer, so its curve shows too; any other optimizer keeps its LR.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lightning_tuning.callbacks._coordinator import base_lr, coordinator_for
from lightning_tuning.callbacks._names import lr_names, momentum_name, unwrap_optimizer
from lightning_tuning.callbacks._schedule import run_length, schedule_callbacks
from lightning_tuning.schedules import RunLength

MAX_PREVIEW_STEPS = 1_000_000
OPEN_RUN_STEPS = 10_000


@dataclass
class SchedulePreview:
    """The previewed curves: one column per optimizer, param group and quantity, one row per optimizer step.

    Columns are named as Lightning's ``LearningRateMonitor`` names them (``lr-AdamW``, ``lr-SGD/pg2``, and
    ``...-momentum``).
    """

    run: RunLength
    columns: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    csv_path: Path | None = None
    png_path: Path | None = None

    @property
    def steps(self) -> int:
        return len(next(iter(self.columns.values()), []))


def simulate(trainer: pl.Trainer) -> SchedulePreview:
    """Evaluate every optimizer's LR at every optimizer step of the run (after the schedules resolved, i.e. from
    ``on_fit_start`` on)."""
    run = run_length(trainer)
    preview = SchedulePreview(run=run)
    if run.total_steps is None:
        preview.notes.append(
            f"The run has no end (max_steps=-1, max_epochs=-1): previewing its first {OPEN_RUN_STEPS} steps."
        )
    total = min(run.total_steps if run.total_steps is not None else OPEN_RUN_STEPS, MAX_PREVIEW_STEPS)
    callbacks = schedule_callbacks(trainer)
    for callback in callbacks:
        preview.notes += callback.lint(run)
        if callback.is_floor:
            preview.notes.append(
                f"{type(callback).__name__} reacts to validation results, which a preview does not have: its "
                "reductions are not shown."
            )
        if not callback.is_ready():
            preview.notes.append(
                f"{type(callback).__name__} takes max_lr='auto' from the LR range test, which has not run: its "
                "optimizers are not shown. Run `python -m lightning_tuning lr_find` first, or give max_lr."
            )
    coordinator = coordinator_for(trainer)
    scheduled = coordinator.simulate(trainer, run, total) if coordinator is not None and coordinator.prepared else {}
    optimizers = [unwrap_optimizer(optimizer) for optimizer in trainer.optimizers]
    names = lr_names(optimizers)
    torch_curves = _torch_scheduler_curves(trainer, optimizers, names, run, total, preview.notes)
    for index, (optimizer, group_names) in enumerate(zip(optimizers, names, strict=True)):
        planned = any(name in scheduled for name in group_names)
        for group, name in zip(optimizer.param_groups, group_names, strict=True):
            if planned:
                preview.columns[name] = scheduled.get(name, [])
                if momentum_name(name) in scheduled:
                    preview.columns[momentum_name(name)] = scheduled[momentum_name(name)]
            elif name in torch_curves:
                preview.columns[name] = torch_curves[name]
            else:
                preview.columns[name] = [base_lr(group)] * total
        if not planned and not any(name in torch_curves for name in group_names):
            which = f"optimizer {index} ({type(optimizer).__name__})"
            preview.notes.append(
                f"No learning-rate schedule drives {which}: its LR stays constant"
                + (" (no lightning_tuning schedule callback is configured)." if not callbacks else ".")
            )
    return preview


def _torch_scheduler_curves(
    trainer: pl.Trainer,
    optimizers: list[torch.optim.Optimizer],
    names: list[list[str]],
    run: RunLength,
    total: int,
    notes: list[str],
) -> dict[str, list[float]]:
    """Step a copy of each torch scheduler from ``configure_optimizers`` the way Lightning would, on a stand-in."""
    curves: dict[str, list[float]] = {}
    steps_per_epoch = run.steps_per_epoch or max(total, 1)
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        optimizer = unwrap_optimizer(getattr(scheduler, "optimizer", None))
        if optimizer not in optimizers:
            continue
        index = optimizers.index(optimizer)
        if isinstance(scheduler, ReduceLROnPlateau):
            notes.append(
                f"Optimizer {index} has a ReduceLROnPlateau from configure_optimizers; it reacts to validation "
                "results, which a preview does not have: its LR is shown constant."
            )
            continue
        stand_in = torch.optim.SGD(
            [
                {**{k: v for k, v in group.items() if k != "params"}, "params": [torch.zeros(1, requires_grad=True)]}
                for group in optimizer.param_groups
            ]
        )
        try:
            copied = copy.deepcopy(scheduler, memo={id(optimizer): stand_in})
        except Exception as err:  # a scheduler holding something that cannot be copied (a generator, a lock)
            notes.append(
                f"Optimizer {index}'s {type(scheduler).__name__} could not be copied to preview it ({err}); its "
                "curve is not shown."
            )
            continue
        lrs: list[list[float]] = [[] for _ in optimizer.param_groups]
        frequency = max(1, int(config.frequency))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": nothing trains here
            for step in range(total):
                for group_lrs, group in zip(lrs, stand_in.param_groups, strict=True):
                    group_lrs.append(float(group["lr"]))
                if config.interval == "step":
                    # Lightning counts the frequency on the batch index within the epoch
                    if (step % steps_per_epoch + 1) % frequency == 0:
                        copied.step()
                elif (step + 1) % steps_per_epoch == 0 and ((step + 1) // steps_per_epoch) % frequency == 0:
                    copied.step()
        for name, group_lrs in zip(names[index], lrs, strict=True):
            curves[name] = group_lrs
    return curves


def planned_curves(trainer: pl.Trainer) -> dict[str, list[float]]:
    """The planned LR (and cycled momentum) of every optimizer and param group, one value per optimizer step.

    Keys are LearningRateMonitor's names. Call it from ``on_train_start`` on: before every schedule callback has
    resolved (their ``on_fit_start``) it returns ``{}``.
    """
    coordinator = coordinator_for(trainer)
    if coordinator is not None and not coordinator.prepared:
        return {}
    return simulate(trainer).columns


__all__ = ["SchedulePreview", "planned_curves", "simulate"]
