"""``python -m lightning_tuning lr_find --config FILE``: run only the LR range test and print what to configure."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lightning_tuning.callbacks.lr_range_test import LRRangeTest


class _RangeTestDone(Exception):
    """Ends ``trainer.fit`` right after the range test (nothing else is trained)."""


class _StopAfterRangeTest(Callback):
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise _RangeTestDone


def lr_find_command(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule | None = None
) -> dict[str, Any]:
    """Run the configured ``LRRangeTest`` (or a default one) at the start of ``fit``, then stop and report.

    Returns:
        The range test's results: the swept ``lrs``, the ``losses``, the ``smoothed`` losses, the ``suggestions``
        and the ``chosen`` LR.
    """
    callbacks = trainer.callbacks  # type: ignore[attr-defined]
    range_test = next((cb for cb in callbacks if isinstance(cb, LRRangeTest)), None)
    if range_test is None:
        range_test = LRRangeTest(apply="none")
        callbacks.insert(0, range_test)
    stopper = _StopAfterRangeTest()
    callbacks.append(stopper)
    try:
        trainer.fit(model, datamodule=datamodule)
    except _RangeTestDone:
        pass
    finally:
        callbacks.remove(stopper)
    if range_test.results is None:
        raise RuntimeError("the LR range test did not run: trainer.fit ended before training started")
    if trainer.is_global_zero:
        print(range_test.yaml_snippet(), flush=True)
    return range_test.results
