r"""
TuningDashboard
===============

TensorBoard views of a run, built from what the run really has: the learning rate (and momentum, where it moves)
of every optimizer and param group under ``LearningRateMonitor``'s names, the planned LR curve of the whole run
beside it, loss/metric charts from the metrics the module logs, the hparams tab with the metrics that exist, and the
schedule preview as an image when matplotlib is installed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_tuning import _compat
from lightning_tuning.callbacks._coordinator import base_lr
from lightning_tuning.callbacks._names import lr_names, momentum_name, unwrap_optimizer
from lightning_tuning.callbacks._schedule import schedule_callbacks

#: Longest run whose planned curve is logged at every optimizer step; longer runs are logged at a stride.
MAX_PLANNED_POINTS = 100_000
#: Tag prefix of the planned curves: ``lr_planned/lr-SGD``, ``lr_planned/lr-SGD/pg2``, ``lr_planned/lr-SGD-momentum``.
PLANNED_PREFIX = "lr_planned/"

# Split words a metric name may start or end with, normalised: ``train_loss``, ``train/loss``, ``loss/val``, ...
_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
_SPLIT_RE = "|".join(sorted(_SPLITS, key=len, reverse=True))
_PREFIXED = re.compile(rf"^(?P<split>{_SPLIT_RE})(?P<sep>[_/])(?P<base>.+?)(?:_step|_epoch)?$")
_SUFFIXED = re.compile(rf"^(?P<base>.+?)(?P<sep>[_/])(?P<split>{_SPLIT_RE})(?:_step|_epoch)?$")
# Tags the pack (or Lightning) writes itself: never a loss/metric chart of their own.
_OWN_TAGS = re.compile(r"^(lr-|lr_planned/|lr/|momentum/|plateau/|init/|lr_range_test/|hp/|hp_metric$|epoch$)")


# ---- pure helpers (no Lightning)


def split_metric(name: str) -> tuple[str, str] | None:
    """``(base, split)`` of a train/val/test metric name, e.g. ``("loss", "val")`` for ``valid/loss``; else ``None``.

    ``_step``/``_epoch`` suffixes (``self.log(..., on_step=True, on_epoch=True)``) are ignored.
    """
    for pattern in (_PREFIXED, _SUFFIXED):
        match = pattern.match(name)
        if match:
            return match["base"], _SPLITS[match["split"]]
    return None


def _pair_regex(base: str) -> list[str]:
    """Tag regexes for every split of ``base``, both naming styles, with or without ``_step``/``_epoch``."""
    escaped = re.escape(base)
    return [
        rf"^({_SPLIT_RE})[_/]{escaped}(_step|_epoch)?$",
        rf"^{escaped}[_/]({_SPLIT_RE})(_step|_epoch)?$",
    ]


def metric_charts(names: Iterable[str]) -> dict[str, list[str]]:
    """Charts for the logged metric ``names``: ``{title: [tag regex, ...]}``.

    Train/validation/test variants of one metric share a chart (``train_loss``/``val_loss``,
    ``train/loss``/``valid/loss``, ``acc_train``/``acc_val``); a metric without a split in its name (``d_loss``,
    ``g_loss``) gets a chart of its own. Tags the pack writes itself (``lr-*``, ``plateau/*``, ...) are left out.

    Example::

        >>> metric_charts(["train_loss", "val_loss", "d_loss"])["loss: train / val / test"][0]
        '^(validation|training|train|valid|test|val)[_/]loss(_step|_epoch)?$'
    """
    charts: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        if _OWN_TAGS.match(name):
            continue
        split = split_metric(name)
        if split is not None:
            charts.setdefault(f"{split[0]}: train / val / test", _pair_regex(split[0]))
        else:
            base = re.sub(r"_(step|epoch)$", "", name)
            charts.setdefault(base, [rf"^{re.escape(base)}(_step|_epoch)?$"])
    return charts


def exact(tag: str) -> str:
    """A custom-scalars regex that matches ``tag`` and nothing else."""
    return f"^{re.escape(tag)}$"


def hparams_metric_names(names: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The metrics an HParams table should show: validation and test metrics (``val_ppl``, ``valid/acc``,
    ``test_loss``, ...) plus ``extra`` (monitored ones); when none exist, every metric without ``_step``."""
    names = [name for name in names if not _OWN_TAGS.match(name)]
    chosen = [name for name in names if (split := split_metric(name)) is not None and split[1] in ("val", "test")]
    chosen += [name for name in extra if name in names and name not in chosen]
    if not chosen:
        chosen = [name for name in names if not name.endswith("_step")]
    return sorted(dict.fromkeys(name for name in chosen if not name.endswith("_step")))


def test_counterparts(names: Iterable[str]) -> list[str]:
    """The ``test`` names of validation metrics, in the same style: ``val_acc`` -> ``test_acc``,
    ``valid/loss`` -> ``test/loss``, ``loss_val`` -> ``loss_test``."""
    out = []
    for name in names:
        for pattern in (_PREFIXED, _SUFFIXED):
            match = pattern.match(name)
            if match and _SPLITS[match["split"]] == "val":
                base, sep = match["base"], match["sep"]
                out.append(f"test{sep}{base}" if pattern is _PREFIXED else f"{base}{sep}test")
                break
    return out


# ---- the optimizers, as LearningRateMonitor sees them


def _real_optimizers(trainer: pl.Trainer) -> list[tuple[int, torch.optim.Optimizer]]:
    """``(index, optimizer)`` of every optimizer with LR-carrying param groups (Lightning's mock optimizer, used
    when ``configure_optimizers`` returns ``None``, has none)."""
    out = []
    for index, optimizer in enumerate(trainer.optimizers):
        optimizer = unwrap_optimizer(optimizer)
        if optimizer.param_groups and all("lr" in group for group in optimizer.param_groups):
            out.append((index, optimizer))
    return out


def _momentum_of(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> float | None:
    if "betas" in optimizer.defaults and "betas" in group:
        return float(group["betas"][0])
    if "momentum" in optimizer.defaults and "momentum" in group:
        return float(group["momentum"])
    return None


def planned_curves(trainer: pl.Trainer) -> dict[str, list[float]]:
    """The planned LR (and cycled momentum) of every optimizer and param group at every optimizer step of the run,
    keyed by ``LearningRateMonitor`` names (:func:`lightning_tuning.callbacks._planned.planned_curves`); ``{}`` for
    a module without a real optimizer (Lightning's mock optimizer when ``configure_optimizers`` returns ``None``).

    The pack's schedules and torch schedulers from ``configure_optimizers`` are planned; a ``PlateauDecay`` or
    ``ReduceLROnPlateau`` cannot be (it reacts to validation results): its reductions are not in the curve.
    """
    if not trainer.optimizers or len(_real_optimizers(trainer)) != len(trainer.optimizers):
        return {}
    from lightning_tuning.callbacks._planned import planned_curves as simulate_curves

    return simulate_curves(trainer)


def _steps_per_epoch(trainer: pl.Trainer) -> int | None:
    batches = trainer.num_training_batches
    if batches == float("inf") or batches <= 0:
        return None
    return max(1, -(-int(batches) // max(1, trainer.accumulate_grad_batches)))


# ---- the callback


class TuningDashboard(Callback):
    r"""Build the TensorBoard dashboard of a run, for any LightningModule.

    * **Learning rates**: the LR of every optimizer and param group, scheduled or not (the pack's schedules, a torch
      scheduler from ``configure_optimizers``, or none), at Lightning's logging steps (``log_every_n_steps``) under
      :class:`~lightning.pytorch.callbacks.LearningRateMonitor`'s names (``lr-SGD``, ``lr-Adam-1``,
      ``lr-SGD/pg2``, or the param group's ``name``), to every logger; the momentum (or Adam's beta1) under
      ``<name>-momentum`` where it changes. With a ``LearningRateMonitor`` in the callbacks the LRs are left to it
      (said once), so nothing is logged twice.
    * **Planned curve**: at the start of training, the planned LR (and momentum) of the whole run at every optimizer
      step under ``lr_planned/<name>`` (TensorBoard only), beside the sampled actual values, so a warmup of a few
      steps is visible even when the actual LR is logged every 50 steps. Plateau reductions cannot be planned.
    * **Custom scalars**, written once when the metric names are known (after the first validation, or at the end of
      the first epoch): one chart per optimizer with its actual and planned LR, one per momentum that moves, one per
      metric with its train/val/test variants matched by name (``train_loss``/``val_loss``,
      ``train/loss``/``valid/loss``), one per metric without a split (``d_loss``, ``g_loss``), the monitored metric of
      each :class:`~lightning_tuning.PlateauDecay` with its reductions, the LR range test's sweep and the init
      diagnostics.
    * **HParams**: the run's hyperparameters with the final values of the validation and test metrics that were
      logged (``hp/<name>``), instead of Lightning's ``hp_metric = -1`` placeholder.
    * **Images**: the schedule preview figure (needs matplotlib, the ``plot`` extra).

    Args:
        metrics: metric names for the hparams table, as logged (e.g. ``["val_acc", "val_ppl"]``); ``None`` picks every
            validation and test metric that was logged. Names never logged are left out.
        preview: add the schedule preview image. ``None`` (default): when matplotlib is installed and a schedule
            callback is configured; ``True``: always (fails before training if matplotlib is missing); ``False``: never.
        planned: log the planned LR curve of the whole run (``lr_planned/<name>``).

    Raises:
        MisconfigurationException: ``preview=True`` without matplotlib installed (the message says how to install
            it), or an argument of the wrong type.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import TuningDashboard, Warmup
        >>> trainer = Trainer(callbacks=[Warmup(100), TuningDashboard()])
    """

    #: Read by the LR coordinator: with a dashboard in the callbacks the schedules do not log the LR themselves.
    logs_learning_rates = True

    def __init__(self, metrics: list[str] | None = None, preview: bool | None = None, planned: bool = True) -> None:
        if metrics is not None and (
            isinstance(metrics, str) or not all(isinstance(name, str) and name for name in metrics)
        ):
            raise MisconfigurationException(
                f"TuningDashboard: `metrics={metrics!r}` must be a list of logged metric names (e.g. ['val_acc']) "
                "or null to use every validation and test metric that is logged."
            )
        if preview not in (None, True, False):
            raise MisconfigurationException(
                f"TuningDashboard: `preview={preview!r}` must be true, false or null (when matplotlib is installed)."
            )
        self.metrics = None if metrics is None else list(metrics)
        self.preview = preview
        self.planned = bool(planned)
        self._layout_written = False
        self._planned_logged = False
        self._reported: dict[str, float] = {}
        self._lr_monitor: LearningRateMonitor | None = None
        self._told_monitor = False
        self._momentum_first: dict[str, float] = {}
        self._momentum_moving: set[str] = set()

    @staticmethod
    def _tensorboard(trainer: pl.Trainer) -> TensorBoardLogger | None:
        return next((logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.preview:
            from lightning_tuning.plotting import MatplotlibMissing, has_matplotlib

            if not has_matplotlib():
                raise MatplotlibMissing(
                    "TuningDashboard(preview=True) draws the schedule preview with matplotlib, which is not installed: "
                    '`pip install "lightning-tuning[plot]"` (or `pip install matplotlib`), or set `preview=False`.'
                )
        self._lr_monitor = next((cb for cb in trainer.callbacks if isinstance(cb, LearningRateMonitor)), None)  # type: ignore[attr-defined]
        if self._lr_monitor is not None and not self._told_monitor and stage == "fit":
            rank_zero_info(
                "TuningDashboard: a LearningRateMonitor is in the callbacks; it logs the learning rates"
                + ("" if self._lr_monitor.log_momentum else " and the dashboard only the momenta that move")
                + ", under the same names."
            )
            self._told_monitor = True
        logger = self._tensorboard(trainer)
        if logger is None:
            if trainer.loggers and stage == "fit":
                rank_zero_warn(
                    "TuningDashboard: no TensorBoardLogger, so no custom scalars, planned curve, hparams or images; "
                    "the learning rates still go to the configured loggers."
                )
            return
        # The hparams tab gets real metrics at the end of the run; the -1 placeholder would only shadow them.
        _compat.disable_default_hp_metric(logger)

    # ---- learning rates ---------------------------------------------------------------------------------------

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        names = lr_names(trainer.optimizers)
        cycled = self._scheduled_momentum(trainer)
        for index, optimizer in _real_optimizers(trainer):
            for group_index, group in enumerate(optimizer.param_groups):
                name = momentum_name(names[index][group_index])
                momentum = _momentum_of(optimizer, group)
                if momentum is not None:
                    self._momentum_first.setdefault(name, momentum)
                    if index in cycled:
                        self._momentum_moving.add(name)

    @staticmethod
    def _scheduled_momentum(trainer: pl.Trainer) -> set[int]:
        """Indices of the optimizers whose momentum a schedule cycles (the pack's, or a torch OneCycleLR/CyclicLR)."""
        indices = {
            index
            for callback in schedule_callbacks(trainer)
            if callback.cycles_momentum
            for index in range(len(trainer.optimizers))
            if callback.targets(index)
        }
        for config in trainer.lr_scheduler_configs:
            if getattr(config.scheduler, "cycle_momentum", False):
                scheduled = unwrap_optimizer(getattr(config.scheduler, "optimizer", None))
                indices |= {i for i, opt in enumerate(trainer.optimizers) if unwrap_optimizer(opt) is scheduled}
        return indices

    def current_values(self, trainer: pl.Trainer) -> dict[str, float]:
        """The LR of every param group and the momenta that move, keyed by ``LearningRateMonitor`` names."""
        log_lr = self._lr_monitor is None
        log_momentum = self._lr_monitor is None or not self._lr_monitor.log_momentum
        names = lr_names(trainer.optimizers)
        values: dict[str, float] = {}
        for index, optimizer in _real_optimizers(trainer):
            for group_index, group in enumerate(optimizer.param_groups):
                name = names[index][group_index]
                if log_lr:
                    values[name] = float(group["lr"])
                momentum = _momentum_of(optimizer, group)
                if momentum is None or not log_momentum:
                    continue
                key = momentum_name(name)
                first = self._momentum_first.setdefault(key, momentum)
                if momentum != first:
                    self._momentum_moving.add(key)
                if key in self._momentum_moving:
                    values[key] = momentum
        return values

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._planned_logged:
            self._log_plan(trainer)
        if not trainer.loggers or not _compat.should_update_logs(trainer):
            return
        values = self.current_values(trainer)
        if not values:
            return
        step = _compat.batches_that_stepped(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)

    def _log_plan(self, trainer: pl.Trainer) -> None:
        """The planned curves and the preview image, once, at the first training batch: after every ``on_train_start``
        (the coordinator's base-LR snapshot, an LR range test's suggestion; ``lr_find`` ends the fit before)."""
        self._planned_logged = True
        logger = self._tensorboard(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        curves: dict[str, list[float]] | None = None
        if self.planned:
            curves = planned_curves(trainer)
            self._log_planned(logger, curves)
        if self._wants_preview(trainer):
            self._log_preview(logger, trainer, curves if curves is not None else planned_curves(trainer))

    @staticmethod
    def _log_planned(logger: TensorBoardLogger, curves: dict[str, list[float]]) -> None:
        writer = logger.experiment
        for name, values in curves.items():
            stride = max(1, -(-len(values) // MAX_PLANNED_POINTS))
            for step in range(0, len(values), stride):
                writer.add_scalar(PLANNED_PREFIX + name, values[step], step)
        writer.flush()

    def _wants_preview(self, trainer: pl.Trainer) -> bool:
        if self.preview is False:
            return False
        if self.preview is None:
            from lightning_tuning.plotting import has_matplotlib

            return has_matplotlib() and bool(schedule_callbacks(trainer))
        return True

    @staticmethod
    def _log_preview(logger: TensorBoardLogger, trainer: pl.Trainer, curves: dict[str, list[float]]) -> None:
        if not curves:
            return
        from lightning_tuning.plotting import render_rgb
        from lightning_tuning.plotting.schedule import schedule_figure

        figure = schedule_figure(curves, steps_per_epoch=_steps_per_epoch(trainer))
        logger.experiment.add_image("schedule_preview", render_rgb(figure), 0, dataformats="HWC")

    # ---- custom scalars layout ---------------------------------------------------------------------------------

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._write_layout(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_layout(trainer)

    def logged_metric_names(self, trainer: pl.Trainer) -> list[str]:
        """Names of the scalar metrics the module logged so far (``callback_metrics`` and ``logged_metrics``)."""
        names = set(trainer.callback_metrics) | set(trainer.logged_metrics)
        return sorted(name for name in names if not _OWN_TAGS.match(name))

    def _write_layout(self, trainer: pl.Trainer) -> None:
        logger = self._tensorboard(trainer)
        if logger is None or self._layout_written or not trainer.is_global_zero:
            return
        logger.experiment.add_custom_scalars(self.layout(trainer))
        logger.experiment.flush()
        self._layout_written = True

    def layout(self, trainer: pl.Trainer) -> dict[str, dict[str, list[Any]]]:
        """The custom-scalars layout: ``{category: {chart: ["Multiline", [tag regex, ...]]}}``."""
        names = lr_names(trainer.optimizers)
        learning_rate: dict[str, list[Any]] = {}
        momentum: dict[str, list[Any]] = {}
        moving = self._momentum_moving | {momentum_name(name) for name in planned_momentum_names(self, trainer)}
        for index, _ in _real_optimizers(trainer):
            optimizer_name = names[index][0].split("/")[0]
            lr_tags = [tag for name in names[index] for tag in (exact(name), exact(PLANNED_PREFIX + name))]
            learning_rate[f"{optimizer_name}: actual and planned"] = ["Multiline", lr_tags]
            momentum_tags = [
                tag
                for name in names[index]
                if momentum_name(name) in moving
                for tag in (exact(momentum_name(name)), exact(PLANNED_PREFIX + momentum_name(name)))
            ]
            if momentum_tags:
                momentum[f"{optimizer_name}-momentum: actual and planned"] = ["Multiline", momentum_tags]
        layout: dict[str, dict[str, list[Any]]] = {}
        if learning_rate:
            layout["learning rate"] = learning_rate
        if momentum:
            layout["momentum / beta1"] = momentum
        metrics = {
            title: ["Multiline", tags] for title, tags in metric_charts(self.logged_metric_names(trainer)).items()
        }
        if metrics:
            layout["metrics"] = metrics
        plateaus = [cb for cb in schedule_callbacks(trainer) if cb.is_floor]
        if plateaus:
            plateau: dict[str, list[Any]] = {
                f"{cb.monitor} and reductions": ["Multiline", [exact(cb.monitor), r"^plateau/reduced$"]]  # type: ignore[attr-defined]
                for cb in plateaus
            }
            plateau["LR scale per group"] = ["Multiline", [r"^plateau/.*/scale/.*"]]
            layout["plateau decay"] = plateau
        kinds = {type(callback).__name__ for callback in trainer.callbacks}  # type: ignore[attr-defined]
        if "LRRangeTest" in kinds:
            layout["lr range test"] = {"smoothed loss vs sweep step": ["Multiline", [r"^lr_range_test/smoothed_loss$"]]}
        if kinds & {"WeightInit", "LSUVInit"}:
            layout["init"] = {
                "activation std per layer": ["Multiline", [r"^init/.*act_std"]],
                "gradient std per layer": ["Multiline", [r"^init/.*grad_std"]],
                "dead ReLU fraction per layer": ["Multiline", [r"^init/.*dead.*"]],
            }
        return layout

    # ---- hparams -----------------------------------------------------------------------------------------------

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_layout(trainer)
        self._report(trainer, pl_module)

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, pl_module)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # a fit that ended early (``lr_find``, an interrupt) still gets its layout
        if stage == "fit":
            self._write_layout(trainer)

    def _hparams_metrics(self, trainer: pl.Trainer) -> list[str]:
        if self.metrics is not None:
            return self.metrics
        monitored = [getattr(cb, "monitor", None) for cb in trainer.callbacks]  # type: ignore[attr-defined]
        names = [name for name, value in trainer.callback_metrics.items() if _is_scalar(value)]
        return hparams_metric_names(names, extra=[name for name in monitored if isinstance(name, str)])

    def _report(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = self._tensorboard(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        chosen = self._hparams_metrics(trainer)
        values = {
            f"hp/{name}": float(trainer.callback_metrics[name])
            for name in chosen
            if name in trainer.callback_metrics
            and _is_scalar(trainer.callback_metrics[name])
            and math.isfinite(float(trainer.callback_metrics[name]))
        }
        new = {key: value for key, value in values.items() if self._reported.get(key) != value}
        if not new:
            return
        if not self._reported:
            self._write_session(logger, trainer, pl_module, values, chosen)
        self._reported.update(values)
        logger.log_metrics(new, step=trainer.global_step)
        logger.experiment.flush()

    def _write_session(
        self,
        logger: TensorBoardLogger,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        values: dict[str, float],
        chosen: Sequence[str],
    ) -> None:
        """Write the HParams session once, declaring the metrics a later ``test`` will add as columns too.

        TensorBoard keeps the first session of a run, so test metrics that arrive after fit must be declared now;
        their values come later as ordinary scalars under the same tags.
        """
        from torch.utils.tensorboard.summary import hparams

        declared = dict(values)
        if trainer.state.fn == "fit" and is_overridden("test_step", pl_module):
            later = [name for name in self.metrics or [] if split_metric(name) is not None]
            later += test_counterparts(chosen)
            declared.update({f"hp/{name}": 0.0 for name in later if f"hp/{name}" not in declared})
        params = self.hyperparameters(trainer, pl_module)
        logger.log_hyperparams(params)  # hparams.yaml; with no metrics it writes no session
        writer = _compat.tensorboard_file_writer(logger)
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
        optimizers = _real_optimizers(trainer)
        if optimizers:
            params["Optimizer"] = " + ".join(type(optimizer).__name__ for _, optimizer in optimizers)
            params["LR"] = base_lr(optimizers[0][1].param_groups[0])
        params["Schedule"] = " + ".join(schedules) or (
            " + ".join(type(config.scheduler).__name__ for config in trainer.lr_scheduler_configs) or "constant"
        )
        params["Init"] = " + ".join(inits) or "module default"
        for position, (_, optimizer) in enumerate(optimizers):
            prefix = "optimizer" if len(optimizers) == 1 else f"optimizer{position}"
            group = optimizer.param_groups[0]
            params[f"{prefix}/name"] = type(optimizer).__name__
            params[f"{prefix}/lr"] = base_lr(group)
            for key in ("momentum", "nesterov", "weight_decay", "betas", "alpha", "eps"):
                if key in group:
                    params[f"{prefix}/{key}"] = group[key]
        for callback in tuning:
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


def planned_momentum_names(dashboard: TuningDashboard, trainer: pl.Trainer) -> list[str]:
    """LR names whose momentum a schedule cycles (their momentum chart is drawn even before it first moves)."""
    names = lr_names(trainer.optimizers)
    cycled = dashboard._scheduled_momentum(trainer)
    return [name for index, _ in _real_optimizers(trainer) if index in cycled for name in names[index]]


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, torch.Tensor) or value.numel() == 1


def _scalar(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float, str)):
        return value
    return str(value)
