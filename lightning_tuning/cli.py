"""The ``python -m lightning_tuning`` command line: LightningCLI with TensorBoard, ``lr_find`` and ``preview``.

Example::

    python -m lightning_tuning fit --config configs/quickstart.yaml
    python -m lightning_tuning fit --config configs/quickstart.yaml --config configs/optimizers/nesterov.yaml
    python -m lightning_tuning fit --model lightning.pytorch.demos.boring_classes.BoringModel --trainer.max_epochs 1
    python -m lightning_tuning lr_find --config configs/quickstart.yaml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import ArgumentError, ArgumentParser, lazy_instance
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.imports import RequirementCache
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only, rank_zero_warn
from typing_extensions import override

from lightning_tuning.callbacks.dashboard import TuningDashboard


def _tensorboard_available() -> bool:
    # the two packages Lightning's TensorBoardLogger can write with
    return bool(RequirementCache("tensorboard")) or bool(RequirementCache("tensorboardX"))


class TuningTrainer(Trainer):
    """A :class:`~lightning.pytorch.Trainer` with the two extra entry points behind the CLI's subcommands.

    LightningCLI builds one subcommand per Trainer method (its arguments come from the method's signature)
    and calls that method to run it. ``lr_find`` and ``preview`` take the same arguments as ``fit``
    (``ckpt_path``, ``weights_only``), so the same config files work for all three.
    """

    def lr_find(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        weights_only: bool | None = None,
        min_lr: float | None = None,
        max_lr: float | None = None,
        num_steps: int | None = None,
        mode: Literal["exponential", "linear"] | None = None,
        smoothing: float | None = None,
        divergence_threshold: float | None = None,
        suggestion: Literal["valley", "steepest", "min_div_10"] | None = None,
        skip_start: int | None = None,
        skip_end: int | None = None,
    ) -> Any:
        """Runs a learning-rate range test and prints the suggested LR as a config snippet; trains nothing else.

        The range test (``lightning_tuning.LRRangeTest``) is the one configured in the callbacks or the schedule, else
        a default one; the options below override its settings (unset: the configured or default value). Pass the
        printed snippet after your config (``fit --config CONFIG --config SNIPPET``) to train at the suggested LR.

        Args:
            model: The model to test.
            datamodule: Its data; ``None`` when the model has its own dataloaders.
            ckpt_path: Start from the weights in this checkpoint instead of the model's initial weights.
            weights_only: Load the checkpoint with ``torch.load(weights_only=...)``; ``None`` means ``True``.
            min_lr: First LR of the sweep, > 0 (default 1e-7).
            max_lr: Last LR of the sweep, > min_lr (default 10).
            num_steps: Optimizer steps of the sweep, >= 10 (default 100).
            mode: LR spacing of the sweep (default exponential).
            smoothing: EMA factor of the loss in [0, 1) (default 0.98).
            divergence_threshold: Stop when the smoothed loss exceeds this multiple of the best, > 1 (default 4).
            suggestion: Which suggestion the snippet uses (default min_div_10).
            skip_start: Points left out at the start for steepest (default 10).
            skip_end: Points left out at the end for steepest (default 5).

        Returns:
            What :func:`lightning_tuning.lr_find.lr_find_command` returns.
        """
        from lightning_tuning.lr_find import lr_find_command

        options = {
            "min_lr": min_lr,
            "max_lr": max_lr,
            "num_steps": num_steps,
            "mode": mode,
            "smoothing": smoothing,
            "divergence_threshold": divergence_threshold,
            "suggestion": suggestion,
            "skip_start": skip_start,
            "skip_end": skip_end,
        }
        _load_weights(model, ckpt_path, weights_only)
        return lr_find_command(self, model, datamodule, **{k: v for k, v in options.items() if v is not None})

    def preview(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        weights_only: bool | None = None,
    ) -> Any:
        """Previews the configured run (schedules, initialisation) without training.

        Args:
            model: The model to preview.
            datamodule: Its data; ``None`` when the model has its own dataloaders.
            ckpt_path: Preview the weights in this checkpoint instead of the model's initial weights.
            weights_only: Load the checkpoint with ``torch.load(weights_only=...)``; ``None`` means ``True``.

        Returns:
            What :func:`lightning_tuning.preview.preview_command` returns.
        """
        from lightning_tuning.preview import preview_command

        _load_weights(model, ckpt_path, weights_only)
        return preview_command(self, model, datamodule)


def _load_weights(model: LightningModule, ckpt_path: str | None, weights_only: bool | None) -> None:
    if ckpt_path is None:
        return
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"`ckpt_path` {ckpt_path!r} is not a file; pass the path of a Lightning checkpoint.")
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True if weights_only is None else weights_only)
    model.load_state_dict(checkpoint["state_dict"])


class TuningCLI(LightningCLI):
    """LightningCLI for this package: TensorBoard logging, ``--test_after_fit``, ``lr_find`` and ``preview``.

    Differences from :class:`~lightning.pytorch.cli.LightningCLI`:

    - the default logger must be TensorBoard: if neither ``tensorboard`` nor ``tensorboardX`` is installed, it
      fails before training instead of silently logging to CSV;
    - two more subcommands, ``lr_find`` and ``preview``, parse exactly like ``fit`` and run
      ``lightning_tuning.lr_find.lr_find_command`` / ``lightning_tuning.preview.preview_command``
      (see :class:`TuningTrainer`);
    - ``schedule:`` and ``init:`` take lists of callbacks (the LR schedules, the weight initialisation) that are
      added to ``trainer.callbacks``, so a schedule config and an init config layer on a task config without
      replacing each other's or the task's callbacks;
    - ``dashboard:`` a :class:`~lightning_tuning.TuningDashboard`, on by default (``--dashboard null`` turns it off);
    - ``fit --ckpt_path last`` (or a checkpoint path inside a TensorBoard run) resumes in that run's version
      directory, so checkpoints are found and the TensorBoard curves continue instead of starting a new run;
    - ``--test_after_fit true`` runs ``trainer.test`` after ``fit`` with the best checkpoint (the last weights
      when no checkpoint was saved); it is accepted by every subcommand so that one config serves them all;
    - after each run it prints the final metrics, where the TensorBoard logs are and the ``tensorboard`` command.

    Use :func:`main` to get the package's defaults (subclass mode for model and data, optional data, config
    overwrite).

    Args:
        *args: Positional arguments of :class:`~lightning.pytorch.cli.LightningCLI`.
        trainer_class: A :class:`TuningTrainer` subclass (it provides the extra subcommands).
        **kwargs: Keyword arguments of :class:`~lightning.pytorch.cli.LightningCLI`.

    Raises:
        TypeError: If ``trainer_class`` is not a :class:`TuningTrainer` subclass.
        ModuleNotFoundError: If the default (TensorBoard) logger is used and TensorBoard is not installed.
    """

    def __init__(self, *args: Any, trainer_class: type[TuningTrainer] = TuningTrainer, **kwargs: Any) -> None:
        if not (isinstance(trainer_class, type) and issubclass(trainer_class, TuningTrainer)):
            raise TypeError(
                f"`trainer_class` must be `TuningTrainer` or a subclass of it, got {trainer_class!r}:"
                " the `lr_find` and `preview` subcommands are its methods."
            )
        super().__init__(*args, trainer_class=trainer_class, **kwargs)

    @staticmethod
    @override
    def subcommands() -> dict[str, set[str]]:
        subcommands = LightningCLI.subcommands()
        fit_skips = {"model", "train_dataloaders", "val_dataloaders", "datamodule"}
        return {**subcommands, "lr_find": fit_skips, "preview": fit_skips}

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, run `test` with the best checkpoint (or the last weights if none was saved).",
        )
        # `schedule` and `init` are lists of {class_path, init_args} kept as plain data: jsonargparse would merge a
        # later config's list item-by-item into an earlier one (carrying init_args over to another class); here a
        # later config replaces the whole list, as a user expects. They are built and checked in
        # `instantiate_trainer`, before training, with errors that name the entry.
        parser.add_argument(
            "--init",
            type=list[dict[str, Any]] | None,
            default=None,
            help=(
                "Weight-init callbacks as a list of {class_path, init_args} (e.g. lightning_tuning.WeightInit),"
                " added to `trainer.callbacks` before the schedules; a later config replaces the whole list."
            ),
        )
        parser.add_argument(
            "--dashboard",
            type=TuningDashboard | None,
            default=lazy_instance(TuningDashboard),
            help="The TensorBoard dashboard of the tuning callbacks; `null` turns it off.",
        )
        parser.add_argument(
            "--schedule",
            type=list[dict[str, Any]] | None,
            default=None,
            help=(
                "Learning-rate schedule callbacks as a list of {class_path, init_args} (e.g. lightning_tuning.Warmup),"
                " added to `trainer.callbacks`; a later config replaces the whole list."
            ),
        )

    @override
    def before_instantiate_classes(self) -> None:
        logger = self._get(self.config, "trainer", default={}).get("logger")
        if logger in (None, True) and not _tensorboard_available():
            raise ModuleNotFoundError(
                "lightning_tuning logs to TensorBoard by default (`trainer.logger: true`), but neither `tensorboard`"
                " nor `tensorboardX` is installed. Install it with `pip install tensorboard`, or configure another"
                " logger explicitly with `--trainer.logger`."
            )

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        init = _build_callbacks("init", self._get(self.config_init, "init"))
        schedule = _build_callbacks("schedule", self._get(self.config_init, "schedule"))
        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = trainer_config.get("callbacks") or []
        callbacks = [*(callbacks if isinstance(callbacks, list) else [callbacks]), *init, *schedule]
        dashboard = self._get(self.config_init, "dashboard")
        if dashboard is not None and not any(isinstance(cb, TuningDashboard) for cb in callbacks):
            callbacks.append(dashboard)
        trainer_config["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """Resume inside the checkpoint's TensorBoard run (see :func:`_resume_in_checkpoint_run`)."""
        _resume_in_checkpoint_run(self.trainer, self._get(self.config, "ckpt_path"))

    def after_fit(self) -> None:
        """Prints the validation metrics, optionally tests, and tells where the logs are."""
        validation = _metrics_with_prefix(self.trainer, "val_")
        if self._get(self.config, "test_after_fit"):
            self._test_after_fit()
        test = _metrics_with_prefix(self.trainer, "test_")
        _report(self.trainer, {"validation (last epoch)": validation, "test": test})

    def after_validate(self) -> None:
        """Tells where the logs are."""
        _report(self.trainer, {})

    def after_test(self) -> None:
        """Tells where the logs are."""
        _report(self.trainer, {})

    def after_lr_find(self) -> None:
        """Tells where the logs are."""
        _report(self.trainer, {})

    def after_preview(self) -> None:
        """Tells where the logs are."""
        _report(self.trainer, {})

    def _test_after_fit(self) -> None:
        if not is_overridden("test_step", self.model):
            rank_zero_warn(
                f"`--test_after_fit` is set but `{type(self.model).__name__}` defines no `test_step`; skipping test."
            )
            return
        checkpoint = self.trainer.checkpoint_callback
        best_path = checkpoint.best_model_path if checkpoint is not None else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best_path or None)


def _build_callbacks(key: str, specs: list[dict[str, Any]] | None) -> list[Callback]:
    """Instantiate the ``{class_path, init_args}`` entries of ``key``; an error names the entry and the problem."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callback", type=Callback)
    callbacks = []
    for index, spec in enumerate(specs or []):
        name = spec.get("class_path", "?") if isinstance(spec, dict) else repr(spec)
        try:
            config = parser.parse_object({"callback": spec})
            callbacks.append(parser.instantiate_classes(config).callback)
        except (ArgumentError, MisconfigurationException, TypeError, ValueError) as error:
            raise MisconfigurationException(
                f"`{key}[{index}]` ({name}) is not a valid callback: {error}\nEach entry of `{key}` is "
                "{class_path: <Callback class, e.g. lightning_tuning.Warmup>, init_args: {<its arguments>}}."
            ) from error
    return callbacks


def _resume_in_checkpoint_run(trainer: Trainer, ckpt_path: str | None) -> None:
    """Point an unversioned TensorBoardLogger at the run directory of the checkpoint being resumed.

    A new run directory (``version_N+1``) would hide ``last.ckpt`` from ``--ckpt_path last`` and start the
    TensorBoard curves over; resuming in the checkpoint's own directory continues them.
    """
    loggers = _tensorboard_loggers(trainer)
    if not ckpt_path or not loggers or loggers[0]._version is not None:
        return
    logger = loggers[0]
    run_root = Path(logger.root_dir)
    if ckpt_path == "last":
        runs = sorted(
            (path.parent.parent for path in run_root.glob("*/checkpoints/last*.ckpt")),
            key=lambda run: run.stat().st_mtime,
        )
        if not runs:
            return
        logger._version = runs[-1].name
    else:
        path = Path(ckpt_path).resolve()
        if path.parent.name == "checkpoints" and path.parent.parent.parent == run_root.resolve():
            logger._version = path.parent.parent.name
    rank_zero_info(f"Resuming in {_display_path(logger.log_dir)}: checkpoints and TensorBoard curves continue there.")


def _metrics_with_prefix(trainer: Trainer, prefix: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in sorted(trainer.callback_metrics.items())
        if name.startswith(prefix) and value.numel() == 1
    }


def _tensorboard_loggers(trainer: Trainer) -> list[TensorBoardLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def _display_path(path: str) -> str:
    # relative paths are shorter to read and to paste, but only when they stay below the working directory
    if "://" in path:
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


@rank_zero_only
def _report(trainer: Trainer, sections: dict[str, dict[str, float]]) -> None:
    lines = []
    for title, metrics in sections.items():
        if metrics:
            lines.append(f"Final {title}: " + ", ".join(f"{name}={value:.4f}" for name, value in metrics.items()))
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_path:
        best = checkpoint.best_model_score
        score = "" if best is None else f" ({checkpoint.monitor}={best:.4f})"
        lines.append(f"Best checkpoint{score}: {_display_path(checkpoint.best_model_path)}")
    for logger in _tensorboard_loggers(trainer):
        lines.append(f"TensorBoard logs: {_display_path(logger.log_dir)}")
        lines.append(f"View them with:   tensorboard --logdir {_display_path(logger.root_dir)}")
    if lines:
        print("\n".join(lines))


def main(args: ArgsType = None) -> TuningCLI | None:
    """Runs the ``lightning_tuning`` command line (``python -m lightning_tuning`` or ``lightning-tuning``).

    Model and data are given by class path (subclass mode); data is optional because a LightningModule may
    bring its own dataloaders. A rerun overwrites ``config.yaml`` in an existing log directory.

    Args:
        args: Arguments as on the command line (list, dict or Namespace); ``None`` reads ``sys.argv``.

    Returns:
        With ``args``, the CLI after running the subcommand, with ``trainer``, ``model`` and ``datamodule``
        attributes. Without (the console script's ``sys.exit(main())``), ``None``, so a successful run exits 0;
        a failure raises, so the process exits non-zero.

    Example::

        main(["fit", "--config", "configs/quickstart.yaml", "--trainer.max_epochs", "1"])
    """
    cli = TuningCLI(
        LightningModule,
        # `None` (instead of LightningDataModule) is how LightningCLI makes `--data` optional in subclass mode
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
    return None if args is None else cli
