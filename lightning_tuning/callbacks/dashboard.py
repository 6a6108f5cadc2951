r"""
TuningDashboard
===============

TensorBoard views of what the tuning callbacks did: a custom-scalars layout, the hparams tab with the run's real
hyperparameters and final metrics, and the schedule preview as an image.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from lightning_tuning.callbacks._coordinator import base_lr
from lightning_tuning.callbacks._schedule import schedule_callbacks

DEFAULT_METRICS = ("val_loss", "val_acc", "test_loss", "test_acc", "val_perplexity", "test_perplexity")
MAX_PREVIEW_STEPS = 200_000


class TuningDashboard(Callback):
    r"""Build the TensorBoard dashboard of a tuning run (rank 0 only; nothing to do without a TensorBoardLogger).

    * **Custom scalars** (the "CUSTOM SCALARS" tab), written once per run: the LR and momentum of every optimizer
      and param group on one chart; train and validation loss on one chart; the monitored metric of each
      :class:`~lightning_tuning.PlateauDecay` with its reduction markers; the LR range test's sweep; the
      per-layer init diagnostics of :class:`~lightning_tuning.WeightInit`/:class:`~lightning_tuning.LSUVInit`.
    * **HParams**: the run's real hyperparameters (optimizer, its LR/momentum/weight decay, each schedule and
      init callback's settings, the module's and datamodule's ``hparams``) with the final values of
      ``metrics`` under ``hp/<name>`` tags, instead of Lightning's ``hp_metric = -1`` placeholder.
    * **Images**: the schedule preview of the configured run (``schedule_preview``); the range test adds its own
      ``lr_range_test`` figure.

    Args:
        metrics: metric names to report in the hparams tab, as logged (e.g. ``val_acc``); the ones never logged
            are left out.
        preview: add the schedule preview image at the start of training.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import TuningDashboard, Warmup
        >>> trainer = Trainer(callbacks=[Warmup(100), TuningDashboard()])
    """

    def __init__(self, metrics: list[str] | None = None, preview: bool = True) -> None:
        self.metrics = list(DEFAULT_METRICS if metrics is None else metrics)
        self.preview = preview
        self._layout_written = False
        self._reported: dict[str, float] = {}

    @staticmethod
    def _tensorboard(trainer: pl.Trainer) -> TensorBoardLogger | None:
        return next((logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        logger = self._tensorboard(trainer)
        if logger is None:
            if trainer.loggers:
                rank_zero_warn("TuningDashboard needs a TensorBoardLogger; the configured loggers get no dashboard.")
            return
        # The hparams tab gets real metrics at the end of the run; the -1 placeholder would only shadow them.
        logger._default_hp_metric = False

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = self._tensorboard(trainer)
        if logger is None or not trainer.is_global_zero or self._layout_written:
            return
        logger.experiment.add_custom_scalars(self.layout(trainer))
        self._layout_written = True

    def layout(self, trainer: pl.Trainer) -> dict[str, dict[str, list[Any]]]:
        """The custom-scalars layout: ``{category: {chart: ["Multiline", [tag regex, ...]]}}``."""
        layout: dict[str, dict[str, list[Any]]] = {
            "learning rate": {"LR per optimizer and param group": ["Multiline", [r"lr/.*", r"lr-.*"]]},
            "loss": {
                "train and validation loss": ["Multiline", [r"train_loss.*", r"val_loss.*"]],
                "validation metrics": ["Multiline", [r"val_.*"]],
            },
            "lr range test": {"smoothed loss vs sweep step": ["Multiline", [r"lr_range_test/smoothed_loss"]]},
            "init": {
                "activation std per layer": ["Multiline", [r"init/.*act_std"]],
                "gradient std per layer": ["Multiline", [r"init/.*grad_std"]],
                "dead ReLU fraction per layer": ["Multiline", [r"init/.*dead.*"]],
            },
        }
        if any(cb.cycles_momentum for cb in schedule_callbacks(trainer)):
            layout["learning rate"]["momentum / beta1 per param group"] = ["Multiline", [r"momentum/.*"]]
        plateaus = [cb for cb in schedule_callbacks(trainer) if cb.is_floor]
        if plateaus:
            layout["plateau decay"] = {
                f"{cb.monitor} and reductions": ["Multiline", [rf"{cb.monitor}$", r"plateau/reduced"]]  # type: ignore[attr-defined]
                for cb in plateaus
            }
            layout["plateau decay"]["LR scale per group"] = ["Multiline", [r"plateau/.*/scale/.*"]]
        return layout

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = self._tensorboard(trainer)
        if not self.preview or logger is None or not schedule_callbacks(trainer):
            return
        from lightning_tuning.preview import preview_figure, simulate

        total = trainer.estimated_stepping_batches
        if total == float("inf") or total > MAX_PREVIEW_STEPS:
            return
        preview = simulate(trainer)
        if trainer.is_global_zero:
            logger.experiment.add_figure("schedule_preview", preview_figure(preview), 0, close=True)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, pl_module)

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, pl_module)

    def _report(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = self._tensorboard(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        values = {
            f"hp/{name}": float(trainer.callback_metrics[name])
            for name in self.metrics
            if name in trainer.callback_metrics and math.isfinite(float(trainer.callback_metrics[name]))
        }
        new = {key: value for key, value in values.items() if self._reported.get(key) != value}
        if not new:
            return
        if not self._reported:
            self._write_session(logger, trainer, pl_module, values)
        self._reported.update(values)
        logger.log_metrics(new, step=trainer.global_step)
        logger.experiment.flush()

    def _write_session(
        self, logger: TensorBoardLogger, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]
    ) -> None:
        """Write the HParams session once, declaring the metrics a later ``test`` will add as columns too.

        TensorBoard keeps the first session of a run, so test metrics that arrive after fit must be declared now;
        their values come later as ordinary scalars under the same tags.
        """
        from torch.utils.tensorboard.summary import hparams

        declared = dict(values)
        if is_overridden("test_step", pl_module):
            declared.update({f"hp/{name}": 0.0 for name in self.metrics if name.startswith("test_")})
        params = self.hyperparameters(trainer, pl_module)
        logger.log_hyperparams(params)  # hparams.yaml; with no metrics it writes no session
        writer = logger.experiment._get_file_writer()
        for summary in hparams(params, declared):
            writer.add_summary(summary, trainer.global_step)

    @staticmethod
    def hyperparameters(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The run's hyperparameters as flat scalars: optimizer, schedule, init, module and data settings."""
        params: dict[str, Any] = {}
        # Capitalised summary keys sort first, and TensorBoard shows the first few columns by default.
        tuning = [cb for cb in trainer.callbacks if type(cb).__module__.startswith("lightning_tuning")]  # type: ignore[attr-defined]
        schedules = [type(cb).__name__ for cb in schedule_callbacks(trainer)]
        inits = [type(cb).__name__ for cb in tuning if "init" in type(cb).__module__ or "norm" in type(cb).__module__]
        if trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            params["Optimizer"] = type(trainer.optimizers[0]).__name__
            params["LR"] = base_lr(group)
        params["Schedule"] = " + ".join(schedules) or "constant"
        params["Init"] = " + ".join(inits) or "module default"
        for index, optimizer in enumerate(trainer.optimizers):
            prefix = "optimizer" if len(trainer.optimizers) == 1 else f"optimizer{index}"
            group = optimizer.param_groups[0]
            params[f"{prefix}/name"] = type(optimizer).__name__
            params[f"{prefix}/lr"] = base_lr(group)
            for key in ("momentum", "nesterov", "weight_decay", "betas", "alpha", "eps"):
                if key in group:
                    params[f"{prefix}/{key}"] = group[key]
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if not type(callback).__module__.startswith("lightning_tuning"):
                continue
            config = getattr(callback, "_config", None) or getattr(callback, "hparams", None)
            if isinstance(config, dict):
                for key, value in config.items():
                    params[f"{type(callback).__name__}/{key}"] = value
            elif not isinstance(callback, TuningDashboard):
                params[type(callback).__name__] = "on"
        for key, value in dict(pl_module.hparams).items():
            params[f"model/{key}"] = value
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            for key, value in dict(getattr(datamodule, "hparams", {})).items():
                params[f"data/{key}"] = value
        params["trainer/max_epochs"] = trainer.max_epochs
        params["trainer/max_steps"] = trainer.max_steps
        params["trainer/accumulate_grad_batches"] = trainer.accumulate_grad_batches
        params["trainer/precision"] = str(trainer.precision)
        params["trainer/world_size"] = trainer.world_size
        return {key: _scalar(value) for key, value in params.items()}


def _scalar(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float, str)):
        return value
    return str(value)
