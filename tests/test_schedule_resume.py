"""Stopping mid-epoch and resuming from the checkpoint continues every schedule exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_tuning import CosineAnnealing, CyclicLR, ExponentialDecay, OneCycle, StepDecay, Warmup
from tests.lr_helpers import LRRecorder, TwoGroupModel, quiet_trainer


class Crash(RuntimeError):
    pass


class CrashAtStep(Callback):
    """Raises when the given optimizer step is about to start, as a killed process would stop."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise Crash


def make_trainer(root: Path, callbacks: list[Callback], **kwargs: Any) -> Trainer:
    settings = {
        "max_epochs": 3,
        "limit_train_batches": 7,
        "limit_val_batches": 0,
        **kwargs,
    }
    return quiet_trainer(default_root_dir=root, callbacks=callbacks, **settings)


SCHEDULES = {
    "warmup_cosine": lambda: [Warmup(5), CosineAnnealing(start="after_warmup", eta_min=1e-4)],
    "one_cycle": lambda: [OneCycle(max_lr=0.4)],
    "cyclic_adam": lambda: [CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=3, mode="triangular2")],
    "warmup_step_epoch": lambda: [Warmup(4), StepDecay(1, gamma=0.7)],
    # the hand-over at step 9 lies between the checkpoint (step 8) and the crash
    "hand_over": lambda: [ExponentialDecay(0.8, interval="step", end=9), CosineAnnealing(start=9, eta_min=1e-4)],
    "exclusive_warmup": lambda: [Warmup(10, start_lr=0.0, exclusive=True), StepDecay(3, 0.5, interval="step")],
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_resume_mid_epoch_is_exact(name: str, tmp_path: Path) -> None:
    optimizer = "adam" if "adam" in name else "sgd"
    torch.manual_seed(0)
    straight = LRRecorder()
    make_trainer(tmp_path / "a", [*SCHEDULES[name](), straight]).fit(TwoGroupModel(optimizer))

    torch.manual_seed(0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1, save_last=True)
    first = LRRecorder()
    with pytest.raises(Crash):
        make_trainer(tmp_path / "b", [*SCHEDULES[name](), first, checkpoint, CrashAtStep(10)]).fit(
            TwoGroupModel(optimizer)
        )
    # the last checkpoint was written after step 8, in the middle of the second epoch (7 steps per epoch)
    resumed = LRRecorder()
    make_trainer(tmp_path / "c", [*SCHEDULES[name](), resumed]).fit(
        TwoGroupModel(optimizer), ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )
    assert first.lrs[:8] == straight.lrs[:8]
    assert resumed.lrs == straight.lrs[8:]
    assert resumed.momenta == straight.momenta[8:]


def test_checkpoint_state_loads_weights_only_and_two_instances_coexist(tmp_path: Path) -> None:
    warm_a, warm_b = StepDecay(3, interval="step"), StepDecay(5, interval="step")
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    make_trainer(tmp_path, [warm_a, warm_b, checkpoint], enable_checkpointing=True, max_epochs=1).fit(TwoGroupModel())
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]
    assert warm_a.state_key != warm_b.state_key
    assert state[warm_a.state_key]["config"]["step_size"] == 3
    assert state[warm_b.state_key]["config"]["step_size"] == 5
    assert state[warm_a.state_key]["steps"] == [7]


def test_resuming_with_a_changed_schedule_warns_what_differs(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    make_trainer(tmp_path, [Warmup(3), checkpoint], max_epochs=1).fit(TwoGroupModel())
    with pytest.warns(UserWarning, match=r"different config \(length: 3 -> 6\)"):
        make_trainer(tmp_path, [Warmup(6)], max_epochs=2).fit(TwoGroupModel(), ckpt_path=tmp_path / "last.ckpt")
