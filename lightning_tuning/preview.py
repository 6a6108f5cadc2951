"""Schedule preview: the whole LR/momentum curve of a configured run, computed without training.

``python -m lightning_tuning preview --config FILE`` sets the run up exactly as ``fit`` would (model, data,
optimizers, callbacks), stops before the first training step through Lightning's clean tuner exit (teardown runs, the
logger finalizes as a success, no checkpoint is written), and evaluates every optimizer's LR at every optimizer step
of the run: the pack's schedules, and a torch scheduler the module returns from ``configure_optimizers``. It writes
``schedule_preview.csv`` and ``schedule_preview.png`` to the run's log directory (and the figure to TensorBoard),
prints a summary, and warns about the known mistakes.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from lightning_tuning._compat import exit_fit_cleanly
from lightning_tuning.callbacks._planned import SchedulePreview, simulate
from lightning_tuning.plotting import has_matplotlib, render_rgb, save_png
from lightning_tuning.plotting.schedule import schedule_figure


class _PreviewProbe(Callback):
    """Runs once every schedule callback has resolved its durations, computes the preview, then ends the fit."""

    def __init__(self) -> None:
        self.preview: SchedulePreview | None = None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.preview = simulate(trainer)
        exit_fit_cleanly()


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
    finally:
        trainer.callbacks.remove(probe)  # type: ignore[attr-defined]
    if probe.preview is None:
        raise RuntimeError("the preview did not run: trainer.fit ended before training started")
    return probe.preview


def write_preview(preview: SchedulePreview, directory: Path, trainer: pl.Trainer | None = None) -> None:
    """Write ``schedule_preview.csv`` (and ``.png`` where matplotlib is installed, and the figure to TensorBoard)."""
    directory.mkdir(parents=True, exist_ok=True)
    preview.csv_path = directory / "schedule_preview.csv"
    with preview.csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", *preview.columns])
        for step, row in enumerate(zip(*preview.columns.values(), strict=True)):
            writer.writerow([step, *(f"{value:.10g}" for value in row)])
    if not has_matplotlib():
        preview.notes.append('No figure: matplotlib is not installed (`pip install "lightning-tuning[plot]"`).')
        return
    pixels = render_rgb(preview_figure(preview), dpi=110)
    preview.png_path = save_png(pixels, directory / "schedule_preview.png")
    if trainer is not None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("schedule_preview", pixels, 0, dataformats="HWC")
                logger.experiment.flush()


def preview_figure(preview: SchedulePreview) -> Any:
    """The preview's figure: LR per param group on top, momentum (where it moves) below, against optimizer steps."""
    curves = {
        key: values for key, values in preview.columns.items() if not key.endswith("-momentum") or len(set(values)) > 1
    }
    return schedule_figure(curves, steps_per_epoch=preview.run.steps_per_epoch)


def format_preview(preview: SchedulePreview) -> str:
    """A compact text summary: start, peak and end LR per param group, and the warnings."""
    lines = [f"Schedule preview: {preview.steps} optimizer steps ({preview.run.steps_per_epoch} per epoch)"]
    width = max([28, *(len(key) + 2 for key in preview.columns)])
    lines.append(f"{'series':<{width}}{'start':>12}{'peak':>12}{'peak at':>10}{'end':>12}")
    for key, values in preview.columns.items():
        if not values:
            continue
        peak = max(values)
        lines.append(f"{key:<{width}}{values[0]:>12.4g}{peak:>12.4g}{values.index(peak):>10}{values[-1]:>12.4g}")
    for note in preview.notes:
        lines.append(f"WARNING: {note}")
    if preview.csv_path is not None:
        written = f"Wrote {preview.csv_path}"
        lines.append(written + (f" and {preview.png_path}" if preview.png_path is not None else ""))
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
