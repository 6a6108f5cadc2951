"""``python -m lightning_tuning lr_find --config FILE``: run only the LR range test and print what to configure."""

from __future__ import annotations

import inspect
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lightning_tuning._compat import exit_fit_cleanly
from lightning_tuning.callbacks.lr_range_test import LRRangeTest


def _settings(range_test: LRRangeTest) -> dict[str, Any]:
    """The constructor arguments of ``range_test`` (each is kept as the attribute of the same name)."""
    names = inspect.signature(LRRangeTest.__init__).parameters
    return {name: getattr(range_test, name) for name in names if name != "self"}


class _StopAfterRangeTest(Callback):
    """Placed after the range test: prints its snippet (rank 0) and ends ``fit`` through Lightning's tuner exit."""

    def __init__(self, range_test: LRRangeTest) -> None:
        self.range_test = range_test

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            snippet = self.range_test.yaml_snippet()
            print(snippet or "# LR range test: no LR suggested (see the warning above)", flush=True)
        # teardown runs, loggers finalize as "success", no on_exception hooks, no checkpoint
        exit_fit_cleanly()


def lr_find_command(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule | None = None,
    **options: Any,
) -> dict[str, Any] | None:
    """Run the configured ``LRRangeTest`` (or a default one with ``apply="none"``) at the start of ``fit``, print the
    suggestion as a config snippet (:meth:`LRRangeTest.yaml_snippet`), and stop: nothing else is trained.

    ``fit`` ends the way Lightning's own ``Tuner.lr_find`` ends it: callbacks' ``teardown`` runs, loggers finalize
    as ``"success"``, no checkpoint is written. Callbacks this function added are removed afterwards. Under DDP the
    snippet is printed once, by rank 0.

    Args:
        trainer: The trainer whose ``fit`` runs the test.
        model: The module to test.
        datamodule: Its data; ``None`` when the module has its own dataloaders.
        **options: ``LRRangeTest`` arguments that override those of the configured test (or of the default one).

    Returns:
        The range test's results: the swept ``lrs``, the ``losses``, the ``smoothed`` losses, the ``suggestions``
        and the ``chosen`` LR (``None`` when the curve had no clear fall); ``None`` when the test ran in other
        processes (``strategy="ddp_spawn"``), whose results do not come back.

    Raises:
        RuntimeError: ``fit`` ended before the training started (e.g. ``max_epochs=0``), so the test did not run.
    """
    callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]
    original = callbacks[:]
    configured = next((cb for cb in callbacks if isinstance(cb, LRRangeTest)), None)
    if configured is None:
        range_test = LRRangeTest(**{"apply": "none", **options})
        callbacks.insert(0, range_test)
    elif options:
        range_test = LRRangeTest(**{**_settings(configured), **options})
        callbacks[callbacks.index(configured)] = range_test
    else:
        range_test = configured
    callbacks.append(_StopAfterRangeTest(range_test))
    try:
        trainer.fit(model, datamodule=datamodule)
    finally:
        callbacks[:] = original
    if range_test.results is None:
        if trainer.world_size > 1 and trainer.state.finished:
            return None
        raise RuntimeError("the LR range test did not run: trainer.fit ended before training started")
    return range_test.results
