"""Under DDP every rank uses the same learning rate at every step, and plateau decisions agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from lightning_tuning import CosineAnnealing, OneCycle, PlateauDecay, Warmup
from tests.lr_helpers import LRRecorder, TwoGroupModel, quiet_trainer


class RankValLoss(TwoGroupModel):
    """Each rank logs a different validation value, unsynced, so only a cross-rank reduction makes ranks agree."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        value = 1.0 if self.global_rank == 0 else 1.0 - 0.05 * self.current_epoch
        self.log("val_loss", torch.tensor(value))


class DumpLRs(Callback):
    def __init__(self, directory: Path, recorder: LRRecorder) -> None:
        self.directory = directory
        self.recorder = recorder

    def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
        path = self.directory / f"rank{trainer.global_rank}.json"
        plateau = next(cb for cb in trainer.callbacks if isinstance(cb, PlateauDecay))
        state = {"lrs": self.recorder.lrs, "momenta": self.recorder.momenta, "reductions": plateau.num_reductions}
        path.write_text(json.dumps(state))


@pytest.mark.slow
def test_every_rank_uses_the_same_lr(tmp_path: Path) -> None:
    recorder = LRRecorder()
    callbacks = [
        Warmup(3),
        CosineAnnealing(start="after_warmup"),
        PlateauDecay(factor=0.5, patience=0),
        OneCycle(max_lr=0.2, cycle_momentum=True),
        recorder,
        DumpLRs(tmp_path, recorder),
    ]
    trainer = quiet_trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=4,
        limit_train_batches=4,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        callbacks=callbacks,
    )
    trainer.fit(RankValLoss("sgd"))
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert len(rank0["lrs"]) == 16
    assert rank0 == rank1
    # rank 0 alone sees a plateau (1.0 every time) and would reduce at every validation with patience 0; the mean
    # over ranks (1.0, 0.975, 0.95, ...) keeps improving, so neither rank reduces
    assert rank0["reductions"] == rank1["reductions"] == 0
