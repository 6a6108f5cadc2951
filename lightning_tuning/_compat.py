"""Every use of a private Lightning attribute, in one place, each with a test (``tests/test_compat.py``).

Lightning has no public API for these; if one of them moves in a Lightning release, the test names which one and this
module is the only file to change.
"""

from __future__ import annotations

from typing import Any, NoReturn

import lightning.pytorch as pl


def batches_that_stepped(trainer: pl.Trainer) -> int:
    """The step Lightning's own ``self.log`` writes at: batches that ran an optimizer step, over the whole fit."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def should_update_logs(trainer: pl.Trainer) -> bool:
    """Whether Lightning logs at this batch (every ``log_every_n_steps``, and at the last batch)."""
    return bool(trainer._logger_connector.should_update_logs)


def train_data_source(trainer: pl.Trainer) -> Any:
    """The fit loop's source of training data (the module or the datamodule that defines ``train_dataloader``)."""
    return trainer.fit_loop._data_source


def exit_fit_cleanly() -> NoReturn:
    """End ``trainer.fit`` the way Lightning's own tuner does: teardown runs and the run is marked finished.

    Lightning catches ``_TunerExitException`` in ``_call_and_handle_interrupt``: no ``on_exception`` hooks, the
    loggers finalize with ``"success"``, callbacks' ``teardown`` runs and no checkpoint is written.
    """
    from lightning.pytorch.utilities.exceptions import _TunerExitException

    raise _TunerExitException


def disable_default_hp_metric(logger: Any) -> None:
    """Stop a ``TensorBoardLogger`` writing its ``hp_metric = -1`` placeholder (``default_hp_metric=False``, after
    construction): the dashboard writes the run's real metrics to the hparams tab instead."""
    logger._default_hp_metric = False


def tensorboard_file_writer(logger: Any) -> Any:
    """The ``FileWriter`` under a ``TensorBoardLogger``'s ``SummaryWriter``, to add raw summaries (hparams session)."""
    return logger.experiment._get_file_writer()


def logger_version(logger: Any) -> Any:
    """The version a logger was given or has resolved (``None`` while it is still to be picked at first use)."""
    return logger._version


def set_logger_version(logger: Any, version: int | str) -> None:
    """Pin the version (sub-folder) a logger writes to before it creates its experiment (resume into the same run)."""
    logger._version = version


def has_validation_data(trainer: pl.Trainer) -> bool:
    """Whether the fit has a source of validation data (a ``val_dataloader`` hook or dataloaders given to ``fit``)."""
    return bool(trainer.fit_loop.epoch_loop.val_loop._data_source.is_defined())


def validation_due(trainer: pl.Trainer) -> bool:
    """Whether the fit loop runs a validation after the training batch it is on (Lightning's own test for it)."""
    epoch_loop = trainer.fit_loop.epoch_loop
    return bool(epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher))


def run_validation_inside_fit(trainer: pl.Trainer) -> None:
    """Run the fit loop's validation now, from a training hook, the way the epoch loop runs it after a batch."""
    from lightning.pytorch.trainer import call

    connector = trainer._logger_connector
    first_loop_iter = connector._first_loop_iter
    trainer.validating = True
    call._call_lightning_module_hook(trainer, "on_validation_model_zero_grad")
    val_loop = trainer.fit_loop.epoch_loop.val_loop
    val_loop.restarting = False  # a fresh validation, not the continuation of the checkpoint's last one
    val_loop.run()
    trainer.training = True
    connector._first_loop_iter = first_loop_iter
