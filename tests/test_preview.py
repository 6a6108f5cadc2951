"""The schedule preview computes, without training, the curve a real fit then follows."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_tuning import CosineAnnealing, OneCycle, PlateauDecay, StepDecay, Warmup
from lightning_tuning.preview import format_preview, preview_command, preview_schedule
from tests.lr_helpers import LRRecorder, TwoGroupModel, fit, quiet_trainer


def trainer(tmp_path: Path, callbacks: list[Any], **kwargs: Any) -> Trainer:
    settings = {
        "max_epochs": 3,
        "limit_train_batches": 6,
        "limit_val_batches": 0,
        **kwargs,
    }
    return quiet_trainer(default_root_dir=tmp_path, callbacks=callbacks, **settings)


def test_preview_equals_the_real_run(tmp_path: Path) -> None:
    def callbacks() -> list[Any]:
        return [Warmup(4), CosineAnnealing(start="after_warmup", eta_min=0.001), StepDecay(1, gamma=0.9)]

    torch.manual_seed(0)
    model = TwoGroupModel("adam")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    preview = preview_schedule(trainer(tmp_path, callbacks()), model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the preview must not train"
    recorder = LRRecorder()
    fit(TwoGroupModel("adam"), [*callbacks(), recorder], tmp_path, max_epochs=3, limit_train_batches=6)
    assert preview.steps == 18
    assert preview.columns["lr-Adam/pg1"] == [lrs[0] for lrs in recorder.lrs]
    assert preview.columns["lr-Adam/pg2"] == [lrs[1] for lrs in recorder.lrs]


def test_preview_command_writes_csv_png_and_tensorboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logger = TensorBoardLogger(tmp_path)
    run = trainer(tmp_path, [OneCycle(max_lr=0.5)], logger=logger)
    preview_command(run, TwoGroupModel("sgd"))
    out = capsys.readouterr().out
    assert "lr-SGD/pg1" in out
    directory = Path(logger.log_dir)
    rows = list(csv.reader((directory / "schedule_preview.csv").open()))
    assert sorted(rows[0]) == ["lr-SGD/pg1", "lr-SGD/pg1-momentum", "lr-SGD/pg2", "lr-SGD/pg2-momentum", "step"]
    assert len(rows) == 19
    assert float(rows[1][rows[0].index("lr-SGD/pg1")]) == pytest.approx(0.5 / 25)
    assert (directory / "schedule_preview.png").stat().st_size > 1000
    assert any(p.name.startswith("events.out.tfevents") for p in directory.iterdir())


@pytest.mark.parametrize(
    ("callbacks", "kwargs", "message"),
    [
        (
            [OneCycle(max_lr=0.1, interval="epoch", pct_start=0.5)],
            {},
            "interval='epoch': its LR changes once per epoch",
        ),
        ([CosineAnnealing(T_max=10)], {}, "ends after 10 of the run's 18 steps"),
        ([Warmup(12)], {}, "more than half the run"),
        ([PlateauDecay()], {"limit_val_batches": 1}, "does not have: its reductions are not shown"),
        ([Warmup("2%")], {}, "Warmup.length='2%' is 0.36 of this run's 18 steps and resolves to 1"),
    ],
)
def test_preview_warns_about_known_mistakes(
    callbacks: list[Any], kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    preview = preview_schedule(trainer(tmp_path, callbacks, **kwargs), TwoGroupModel())
    assert message in format_preview(preview)


def test_preview_refuses_what_fit_refuses(tmp_path: Path) -> None:
    # one rule for every schedule: a point in time the config states must fall inside the run
    with pytest.raises(MisconfigurationException, match=r"StepDecay.step_size is at epoch 5, but the run has 3"):
        preview_schedule(trainer(tmp_path, [StepDecay(step_size=5)]), TwoGroupModel())


class ModuleStepLR(TwoGroupModel):
    """A module that owns its schedule: torch's StepLR from configure_optimizers, stepped every 4 optimizer steps."""

    def configure_optimizers(self) -> Any:
        optimizer = super().configure_optimizers()
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 4}}


def test_preview_shows_a_module_owned_torch_scheduler(tmp_path: Path) -> None:
    preview = preview_schedule(trainer(tmp_path, []), ModuleStepLR())
    recorder = LRRecorder()
    fit(ModuleStepLR(), [recorder], tmp_path, max_epochs=3, limit_train_batches=6)
    assert preview.columns["lr-SGD/pg1"] == [lrs[0] for lrs in recorder.lrs]
    assert preview.columns["lr-SGD/pg2"] == [lrs[1] for lrs in recorder.lrs]
    # Lightning steps it at batch 4 of each 6-batch epoch (frequency counts batches within the epoch)
    assert preview.columns["lr-SGD/pg1"][-1] == pytest.approx(0.1 * 0.5**3)
    assert "stays constant" not in format_preview(preview)
