"""Schedule preview: the whole LR/momentum curve of a configured run, computed without training.

``python -m lightning_tuning preview --config FILE`` sets the run up exactly as ``fit`` would (model, data,
optimizers, callbacks), stops before the first training step, and evaluates every schedule callback at every
optimizer step of the run. It writes ``schedule_preview.csv`` and ``schedule_preview.png`` to the run's log
directory (and the figure to TensorBoard), prints a summary, and warns about the known mistakes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from lightning_tuning.callbacks._schedule import (
    apply_schedules,
    get_momentum,
    momentum_key,
    optimizer_names,
    run_length,
    schedule_callbacks,
)
from lightning_tuning.schedules import RunLength

MAX_PREVIEW_STEPS = 1_000_000


@dataclass
class SchedulePreview:
    """The previewed curves: one column per optimizer, param group and quantity, one row per optimizer step."""

    run: RunLength
    columns: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    csv_path: Path | None = None
    png_path: Path | None = None

    @property
    def steps(self) -> int:
        return len(next(iter(self.columns.values()), []))


class _PreviewDone(Exception):
    """Ends ``trainer.fit`` once the preview is computed (nothing has been trained)."""


class _PreviewProbe(Callback):
    """Runs after every schedule callback resolved its durations, computes the preview, then stops the fit."""

    def __init__(self) -> None:
        self.preview: SchedulePreview | None = None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.preview = simulate(trainer)
        raise _PreviewDone


def simulate(trainer: pl.Trainer) -> SchedulePreview:
    """Evaluate the trainer's schedule callbacks at every optimizer step of its run (callbacks must be resolved)."""
    run = run_length(trainer)
    callbacks = schedule_callbacks(trainer)
    preview = SchedulePreview(run=run)
    if run.total_steps is None:
        preview.notes.append("The run has no end (max_steps=-1, max_epochs=-1): previewing its first 10000 steps.")
    total = min(run.total_steps or 10_000, MAX_PREVIEW_STEPS)
    for callback in callbacks:
        preview.notes += callback.lint(trainer, run)
        if callback.is_floor:
            preview.notes.append(
                f"{type(callback).__name__} reacts to validation results, which a preview does not have: its "
                "reductions are not shown."
            )
        if not callback.is_ready(trainer):
            preview.notes.append(
                f"{type(callback).__name__} takes max_lr='auto' from the LR range test, which has not run: its "
                "optimizers are not shown. Run `python -m lightning_tuning lr_find` first, or give max_lr."
            )
    if not callbacks:
        preview.notes.append("No lightning_tuning schedule callback is configured: the LR stays constant.")
    names = optimizer_names(trainer.optimizers)
    saved_groups = [[dict(group) for group in optimizer.param_groups] for optimizer in trainer.optimizers]
    saved_steps = [list(callback._steps) for callback in callbacks]
    steps_per_epoch = run.steps_per_epoch or total
    try:
        for step in range(total):
            for callback in callbacks:
                callback._steps = [step] * len(trainer.optimizers)
                callback._simulated_epoch = step // steps_per_epoch
            apply_schedules(trainer)
            for index, optimizer in enumerate(trainer.optimizers):
                key = momentum_key(optimizer)
                for group_index, group in enumerate(optimizer.param_groups):
                    prefix = f"{names[index]}/pg{group_index}"
                    preview.columns.setdefault(f"lr/{prefix}", []).append(float(group["lr"]))
                    if key is not None:
                        preview.columns.setdefault(f"momentum/{prefix}", []).append(get_momentum(group, key))
    finally:
        for callback, steps in zip(callbacks, saved_steps, strict=True):
            callback._steps = steps
            callback._simulated_epoch = None
        for optimizer, groups in zip(trainer.optimizers, saved_groups, strict=True):
            for group, saved in zip(optimizer.param_groups, groups, strict=True):
                group.update({key: value for key, value in saved.items() if key != "params"})
    # a momentum that never moves is not worth a chart
    preview.columns = {
        key: values for key, values in preview.columns.items() if key.startswith("lr/") or len(set(values)) > 1
    }
    return preview


def preview_schedule(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule | None = None
) -> SchedulePreview:
    """Set the run up as ``fit`` would, stop before training, and return the previewed curves.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import OneCycle
        >>> from lightning_tuning.preview import preview_schedule
        >>> # preview = preview_schedule(Trainer(max_epochs=3, callbacks=[OneCycle(0.1)]), model)
    """
    probe = _PreviewProbe()
    trainer.callbacks.append(probe)  # type: ignore[attr-defined]
    try:
        trainer.fit(model, datamodule=datamodule)
    except _PreviewDone:
        pass
    finally:
        trainer.callbacks.remove(probe)  # type: ignore[attr-defined]
    if probe.preview is None:
        raise RuntimeError("the preview did not run: trainer.fit ended before training started")
    return probe.preview


def write_preview(preview: SchedulePreview, directory: Path, trainer: pl.Trainer | None = None) -> None:
    """Write the preview as ``schedule_preview.csv`` and ``.png`` into ``directory`` (and to TensorBoard)."""
    directory.mkdir(parents=True, exist_ok=True)
    preview.csv_path = directory / "schedule_preview.csv"
    with preview.csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", *preview.columns])
        for step, row in enumerate(zip(*preview.columns.values(), strict=True)):
            writer.writerow([step, *(f"{value:.10g}" for value in row)])
    figure = preview_figure(preview)
    preview.png_path = directory / "schedule_preview.png"
    figure.savefig(preview.png_path, dpi=110)
    if trainer is not None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("schedule_preview", figure, 0, close=False)
                logger.experiment.flush()
    import matplotlib.pyplot as plt

    plt.close(figure)


def preview_figure(preview: SchedulePreview) -> Any:
    """A matplotlib figure: LR per param group on top, momentum (if it moves) below, against optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    momenta = {key: values for key, values in preview.columns.items() if key.startswith("momentum/")}
    rows = 2 if momenta else 1
    figure, axes = plt.subplots(rows, 1, figsize=(8, 3.2 * rows), sharex=True, squeeze=False)
    for key, values in preview.columns.items():
        if key.startswith("lr/"):
            axes[0][0].plot(values, label=key[3:])
    axes[0][0].set_ylabel("learning rate")
    axes[0][0].legend(fontsize="small")
    axes[0][0].grid(alpha=0.3)
    if momenta:
        for key, values in momenta.items():
            axes[1][0].plot(values, label=key[9:])
        axes[1][0].set_ylabel("momentum / beta1")
        axes[1][0].legend(fontsize="small")
        axes[1][0].grid(alpha=0.3)
    axes[-1][0].set_xlabel("optimizer step")
    figure.suptitle("lightning_tuning schedule preview")
    figure.tight_layout()
    return figure


def format_preview(preview: SchedulePreview) -> str:
    """A compact text summary: start, peak and end LR per param group, and the warnings."""
    lines = [f"Schedule preview: {preview.steps} optimizer steps ({preview.run.steps_per_epoch} per epoch)"]
    lines.append(f"{'series':<28}{'start':>12}{'peak':>12}{'peak at':>10}{'end':>12}")
    for key, values in preview.columns.items():
        if not values:
            continue
        peak = max(values)
        lines.append(f"{key:<28}{values[0]:>12.4g}{peak:>12.4g}{values.index(peak):>10}{values[-1]:>12.4g}")
    for note in preview.notes:
        lines.append(f"WARNING: {note}")
    if preview.csv_path is not None:
        lines.append(f"Wrote {preview.csv_path} and {preview.png_path}")
    return "\n".join(lines)


def preview_command(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule | None = None
) -> SchedulePreview:
    """What ``python -m lightning_tuning preview --config FILE`` runs: compute, write and print the preview."""
    preview = preview_schedule(trainer, model, datamodule)
    directory = Path(trainer.log_dir or trainer.default_root_dir)
    if trainer.is_global_zero:
        write_preview(preview, directory, trainer)
        print(format_preview(preview), flush=True)
    return preview


__all__ = ["SchedulePreview", "format_preview", "preview_command", "preview_figure", "preview_schedule", "simulate"]
