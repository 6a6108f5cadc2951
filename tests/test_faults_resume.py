"""Resume from any checkpoint of a run and go on exactly like the uninterrupted run (``ExactResume``).

A kill -9 leaves the checkpoints written so far; resuming from each checkpoint an uninterrupted run wrote is what a
kill after it would give. The reference is the uninterrupted run itself: per-step LRs, the validations (and the plateau
decisions taken on them) and the final weights must be equal, bit for bit, on the CPU with dropout.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_tuning import PlateauDecay, Warmup
from lightning_tuning.callbacks.exact_resume import ExactResume, collect_rng_states, set_rng_states
from lightning_tuning.demos.resumable import ResumableShuffleSampler
from tests.lr_helpers import quiet_trainer

BATCHES_PER_EPOCH = 8


class DropoutNet(LightningModule):
    """A user-style classifier with dropout, shuffled data (resumable sampler) and a validation loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        return nn.functional.cross_entropy(self.net(inputs), targets)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        inputs, targets = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(inputs), targets))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        inputs = torch.randn(8 * BATCHES_PER_EPOCH, 8, generator=torch.Generator().manual_seed(0))
        data = TensorDataset(inputs, (inputs[:, 0] > 0).long())
        sampler = ResumableShuffleSampler(len(data), seed=1, batch_size=8, trainer=lambda: self.trainer)
        return DataLoader(data, batch_size=8, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        inputs = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
        return DataLoader(TensorDataset(inputs, (inputs[:, 0] > 0).long()), batch_size=8)


class Record(Callback):
    """The LR each optimizer step used, and every validation (global step, val_loss)."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}
        self.validations: list[tuple[int, float]] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        def record(optimizer: Any, args: Any, kwargs: Any) -> None:
            self.lrs[trainer.global_step] = optimizer.param_groups[0]["lr"]

        trainer.optimizers[0].register_step_post_hook(record)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validations.append((trainer.global_step, float(trainer.callback_metrics["val_loss"])))


def run(root: Path, checkpoints: list[Callback], ckpt_path: str | None, exact: bool) -> tuple[Record, dict[str, Any]]:
    seed_everything(42)
    record = Record()
    callbacks = [Warmup(3), PlateauDecay(patience=0, factor=0.5, threshold=0.02), record, *checkpoints]
    trainer = quiet_trainer(
        max_epochs=3,
        val_check_interval=0.5,
        num_sanity_val_steps=0,
        default_root_dir=root,
        callbacks=[*callbacks, *([ExactResume()] if exact else [])],
    )
    model = DropoutNet()
    trainer.fit(model, ckpt_path=ckpt_path)
    return record, {name: tensor.clone() for name, tensor in model.state_dict().items()}


def checkpointing(directory: Path) -> list[Callback]:
    # every 4 steps: mid-epoch validation points (4, 12, 20) and epoch ends (8, 16); every 3: other batches;
    # a monitored checkpoint writes at the end of validations; one more at every train epoch end
    return [
        ModelCheckpoint(dirpath=directory, filename="every4-{step}", every_n_train_steps=4, save_top_k=-1),
        ModelCheckpoint(dirpath=directory, filename="every3-{step}", every_n_train_steps=3, save_top_k=-1),
        ModelCheckpoint(dirpath=directory, filename="val-{step}", monitor="val_loss", save_top_k=-1),
        ModelCheckpoint(dirpath=directory, filename="epoch-{epoch}", save_on_train_epoch_end=True, save_top_k=-1),
    ]


@pytest.mark.slow
def test_resume_from_every_checkpoint_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    reference, weights = run(tmp_path / "straight", checkpointing(tmp_path / "ckpt"), None, exact=True)
    assert len(reference.validations) == 6
    assert len(set(reference.lrs.values())) > 3, "warmup and plateau decisions move the LR"
    paths = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert len(paths) > 15
    for path in paths:
        resumed, resumed_weights = run(tmp_path / path.stem, [], str(path), exact=True)
        state = torch.load(path, weights_only=True)
        step = state["global_step"]
        assert resumed.lrs == {s: lr for s, lr in reference.lrs.items() if s >= step}, f"LRs after {path.name}"
        # a checkpoint written at a batch end precedes the validation due at that batch; the others follow it
        pending = path.name.startswith("every") and step in [s for s, _ in reference.validations]
        expected = [v for v in reference.validations if v[0] > step or (pending and v[0] == step)]
        assert resumed.validations == expected, f"validations after {path.name}"
        for name, tensor in weights.items():
            assert torch.equal(resumed_weights[name], tensor), f"{name} differs after resuming from {path.name}"


@pytest.mark.slow
def test_without_exact_resume_lightning_skips_the_pending_validation_and_dropout_differs(tmp_path: Path) -> None:
    # the control: the checks above can fail. Checkpoint at step 12 = a val_check_interval point, written before
    # that validation ran
    directory = tmp_path / "ckpt"
    every4 = ModelCheckpoint(dirpath=directory, filename="every4-{step}", every_n_train_steps=4, save_top_k=-1)
    reference, weights = run(tmp_path / "straight", [every4], None, exact=False)
    resumed, resumed_weights = run(tmp_path / "resumed", [], str(directory / "every4-step=12.ckpt"), exact=False)
    assert (12, reference.validations[2][1]) == reference.validations[2]
    assert resumed.validations[0][0] == 16, "Lightning 2.6 skips the validation due at the checkpointed batch"
    assert not all(torch.equal(resumed_weights[name], tensor) for name, tensor in weights.items())


def test_rng_states_round_trip_as_plain_values(tmp_path: Path) -> None:
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    states = collect_rng_states()
    expected = (torch.rand(3), random.random(), np.random.rand())
    path = tmp_path / "states.pt"
    torch.save(states, path)
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    set_rng_states(torch.load(path, weights_only=True))  # plain values: a weights-only load accepts them
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1]
    assert np.random.rand() == expected[2]


def test_exact_resume_state_says_where_the_checkpoint_was_written(tmp_path: Path) -> None:
    seen: dict[int, dict[str, Any]] = {}

    class Capture(Callback):
        def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
            guard = next(cb for cb in trainer.callbacks if isinstance(cb, ExactResume))
            seen[trainer.global_step] = guard.state_dict()

    trainer = quiet_trainer(
        max_epochs=1,
        val_check_interval=0.5,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        callbacks=[ExactResume(), Capture()],
    )
    trainer.fit(DropoutNet())
    # 8 batches, validation after batches 4 and 8: pending there (a checkpoint now would precede it)
    assert [step for step, state in seen.items() if state["validation_pending"]] == [4, 8]
    assert [step for step, state in seen.items() if state["at_epoch_end"]] == [8]
