"""One test per function of ``lightning_tuning._compat``, against a real Trainer: when a Lightning release moves one of
the private attributes behind them, the failing test names the function to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel, RandomDataset
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from lightning_tuning import _compat
from tests.lr_helpers import quiet_trainer


class Probe(Callback):
    """Records what the compat functions answer at every training batch start."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bool, int]] = []
        self.sources: list[Any] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self.seen.append(
            (_compat.batches_that_stepped(trainer), _compat.should_update_logs(trainer), trainer.global_step)
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.sources.append(_compat.train_data_source(trainer))


def test_batches_that_stepped_and_should_update_logs_with_accumulation(tmp_path: Path) -> None:
    """Over 2 epochs of 6 batches with accumulate_grad_batches=2: 3 optimizer steps per epoch, counted across epochs;
    Lightning logs when the step about to be taken is a multiple of log_every_n_steps (here 2)."""
    probe = Probe()
    trainer = quiet_trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        limit_train_batches=6,
        limit_val_batches=0,
        accumulate_grad_batches=2,
        log_every_n_steps=2,
        enable_checkpointing=False,
        callbacks=[probe],
    )
    trainer.fit(BoringModel())
    stepped = [seen[0] for seen in probe.seen]
    assert stepped == [batch // 2 for batch in range(12)], "one count per optimizer step, not per batch"
    assert stepped == [seen[2] for seen in probe.seen], "with one optimizer it equals global_step"
    logs = [seen[1] for seen in probe.seen]
    assert logs == [(count + 1) % 2 == 0 for count in stepped]


def test_train_data_source_is_the_datamodule_or_the_module(tmp_path: Path) -> None:
    for with_datamodule in (True, False):
        probe = Probe()
        model, datamodule = BoringModel(), BoringDataModule()
        trainer = quiet_trainer(default_root_dir=tmp_path, max_steps=1, limit_val_batches=0, callbacks=[probe])
        trainer.fit(model, datamodule=datamodule if with_datamodule else None)
        source = probe.sources[0]
        assert source.instance is (datamodule if with_datamodule else model)
        assert source.name == "train_dataloader"


def test_has_validation_data(tmp_path: Path) -> None:
    class TrainOnly(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

        def training_step(self, batch: torch.Tensor) -> torch.Tensor:
            return self.layer(batch).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(RandomDataset(32, 8), batch_size=4)

    answers: list[bool] = []

    class Ask(Callback):
        def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
            answers.append(_compat.has_validation_data(trainer))

    for model, dataloaders in ((BoringModel(), None), (TrainOnly(), None), (TrainOnly(), "given to fit")):
        trainer = quiet_trainer(default_root_dir=tmp_path, max_steps=1, callbacks=[Ask()], enable_checkpointing=False)
        val = DataLoader(RandomDataset(32, 8), batch_size=4) if dataloaders else None
        trainer.fit(model, val_dataloaders=val)
    assert answers == [True, False, True]


def test_exit_fit_cleanly_ends_fit_without_error_and_runs_teardown(tmp_path: Path) -> None:
    calls: list[str] = []

    class Stop(Callback):
        def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, i: int) -> None:
            if i == 2:
                _compat.exit_fit_cleanly()

        def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
            calls.append("on_exception")

        def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
            calls.append("teardown")

    trainer = quiet_trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=5, callbacks=[Stop()])
    trainer.fit(BoringModel())  # no exception escapes
    assert trainer.global_step == 2
    assert calls == ["teardown"]
    assert trainer.state.status == "finished"


def test_disable_default_hp_metric_and_tensorboard_file_writer(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from torch.utils.tensorboard.summary import scalar

    class WithHparams(BoringModel):
        def __init__(self, width: int = 32) -> None:
            super().__init__()
            self.save_hyperparameters()  # Lightning logs hparams, and with them the hp_metric placeholder

    def hparams_run(name: str, disable: bool) -> list[str]:
        logger = TensorBoardLogger(tmp_path, name=name)
        if disable:
            _compat.disable_default_hp_metric(logger)
        trainer = quiet_trainer(default_root_dir=tmp_path, logger=logger, max_steps=1, limit_val_batches=0)
        trainer.fit(WithHparams())
        _compat.tensorboard_file_writer(logger).add_summary(scalar("raw", 1.5), 7)
        logger.experiment.flush()
        acc = ea.EventAccumulator(logger.log_dir).Reload()
        assert [(event.step, event.value) for event in acc.Scalars("raw")] == [(7, 1.5)]
        return acc.Tags()["scalars"]

    assert "hp_metric" in hparams_run("default", disable=False), "Lightning writes the placeholder by default"
    assert "hp_metric" not in hparams_run("disabled", disable=True)


@pytest.mark.parametrize("version", [3, "resumed"])
def test_logger_version_and_set_logger_version(tmp_path: Path, version: int | str) -> None:
    logger = TensorBoardLogger(tmp_path, name="run")
    assert _compat.logger_version(logger) is None, "not picked until first use"
    _compat.set_logger_version(logger, version)
    assert _compat.logger_version(logger) == version
    assert logger.version == version
    assert Path(logger.log_dir) == tmp_path / "run" / (f"version_{version}" if isinstance(version, int) else version)
    assert _compat.logger_version(TensorBoardLogger(tmp_path, name="run", version=5)) == 5


def test_compat_functions_are_all_tested() -> None:
    import inspect

    public = {name for name, value in vars(_compat).items() if inspect.isfunction(value) and not name.startswith("_")}
    source = Path(__file__).read_text()
    untested = sorted(name for name in public if f"_compat.{name}(" not in source)
    assert not untested, f"_compat functions without a test here: {untested}"
