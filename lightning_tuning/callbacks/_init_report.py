"""The init report shared by :class:`~lightning_tuning.WeightInit` and :class:`~lightning_tuning.LSUVInit`.

Per layer: weight std, output mean/std on a real batch, gradient std after one backward (``torch.autograd.grad``, so
no ``.grad`` is written and the optimizer sees nothing), fraction of dead ReLU units. Printed on rank 0 as a table and
sent to every logger with ``log_metrics`` under ``init/<layer>/<stat>`` (``pl_module.log`` is not allowed in
``on_fit_start``); a TensorBoard logger shows them as scalars at the current global step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lightning_tuning.callbacks._init_probe import probe_guard, run_probe
from lightning_tuning.init.report import LayerStats, format_table, layer_statistics, signal_problems

_LOGGED = ("weight_std", "act_mean", "act_std", "grad_std", "dead_frac")


def measure(pl_module: pl.LightningModule, batch: Any | None, example: Any | None) -> list[LayerStats]:
    """Trace the layer order and activations, then measure each layer, without side effects on training.

    Layers the traced call never reaches get a row with their weight (and gradient) std and ``-`` elsewhere.
    """
    with probe_guard(pl_module):
        probe = run_probe(pl_module, batch, example)
        if probe.forward is None and probe.training_step is None:
            raise MisconfigurationException(
                "The init report needs a traced call of the module's `forward`, but none worked."
                f" {probe.describe_failure()}"
            )
        layers = probe.trace.order + probe.trace.untraced
        return layer_statistics(pl_module, layers, probe.trace.activation, probe.loss, set(probe.trace.untraced))


def publish(trainer: pl.Trainer, stats: list[LayerStats], title: str, notes: Mapping[str, str] | None = None) -> None:
    """Print the table on rank 0 and send the numbers to every logger."""
    rank_zero_info(f"{title} (step {trainer.global_step})\n{format_table(stats, notes)}")
    metrics: dict[str, float] = {}
    for s in stats:
        for key in _LOGGED:
            value = getattr(s, key)
            if not math.isnan(value):
                metrics[f"init/{s.layer}/{key}"] = value
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
    publish_pictures(trainer, stats, title)


def publish_pictures(trainer: pl.Trainer, stats: list[LayerStats], title: str) -> None:
    """To every TensorBoard logger: the per-layer figure (``init/layers``, an image; needs matplotlib) and the table
    (``init/table``, Markdown in the Text tab), at the current global step. Without matplotlib only the table is
    written, and the log says how to get the figure."""
    from lightning.pytorch.loggers import TensorBoardLogger

    writers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
    if not writers or not trainer.is_global_zero:
        return
    from lightning_tuning.plotting import MatplotlibMissing, render_rgb
    from lightning_tuning.plotting.init_report import init_report_figure, init_report_markdown

    step = trainer.global_step
    try:
        pixels = render_rgb(init_report_figure(stats, f"{title} (step {step})"))
    except MatplotlibMissing as err:
        rank_zero_info(f"{title}: the per-layer figure is skipped. {err}")
        pixels = None
    table = init_report_markdown(stats)
    for logger in writers:
        logger.experiment.add_text("init/table", table, step)
        if pixels is not None:
            logger.experiment.add_image("init/layers", pixels, step, dataformats="HWC")


def check_thresholds(vanish_below: float | None, explode_above: float | None, who: str) -> None:
    """The constructor check of the two fail-fast thresholds.

    Raises:
        MisconfigurationException: for a threshold that is not a positive number (or ``None``).
    """
    for argument, value in (("vanish_below", vanish_below), ("explode_above", explode_above)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
            raise MisconfigurationException(f"{who}({argument}={value!r}): must be a positive number or None.")


def report_and_check(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    batch: Any | None,
    example: Any | None,
    report: bool,
    vanish_below: float | None,
    explode_above: float | None,
    who: str,
    notes: Mapping[str, str] | None = None,
) -> None:
    """Measure the init when asked to report it or to fail fast on it; publish it, then fail fast."""
    if not report and vanish_below is None and explode_above is None:
        return
    stats = measure(pl_module, batch, example)
    if report:
        publish(trainer, stats, f"{who} report", notes)
    fail_fast(trainer, stats, vanish_below, explode_above, who)


def fail_fast(
    trainer: pl.Trainer, stats: list[LayerStats], vanish_below: float | None, explode_above: float | None, who: str
) -> None:
    """Raise on every rank when any rank saw a layer output std outside the thresholds.

    Raises:
        MisconfigurationException: Naming each offending layer and the thresholds, so the init can be changed.
    """
    if vanish_below is None and explode_above is None:
        return
    problems = signal_problems(stats, vanish_below, explode_above)
    if trainer.strategy.reduce_boolean_decision(bool(problems), all=False):
        raise MisconfigurationException(
            f"{who}: the signal vanishes or explodes with depth at init:\n  "
            + ("\n  ".join(problems) or "(seen on another rank)")
            + f"\nThresholds: vanish_below={vanish_below}, explode_above={explode_above}. Pick a scheme whose gain fits"
            " the activation (e.g. kaiming_normal with nonlinearity: auto, or LSUVInit), or relax the thresholds."
        )
