"""ScheduleFree: schedule-free optimizers in Lightning fits, against a hand-written torch loop that switches modes
the way the ``schedulefree`` package documents (``train()`` before training steps, ``eval()`` before evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_tuning import LRRangeTest, ScheduleFree, Warmup

schedulefree = pytest.importorskip("schedulefree")

LR = 0.01


def data(n: int = 24, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator)
    return TensorDataset(x, (x.sum(dim=1, keepdim=True) > 0).float())


class Regressor(LightningModule):
    """Records the optimizer's mode in every step it runs."""

    def __init__(self, optimizer: str = "adamw") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
        self.optimizer_name = optimizer
        self.modes: dict[str, list[bool]] = {"train": [], "val": [], "test": []}

    def _mode(self) -> bool:
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else self._optimizer
        return bool(optimizer.param_groups[0].get("train_mode", True))

    def _loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.binary_cross_entropy_with_logits(self.net(x), y)

    def training_step(self, batch: Any) -> torch.Tensor:
        self.modes["train"].append(self._mode())
        return self._loss(batch)

    def validation_step(self, batch: Any) -> None:
        self.modes["val"].append(self._mode())
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch: Any) -> None:
        self.modes["test"].append(self._mode())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(data(), batch_size=4)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(data(8, seed=1), batch_size=4)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(data(8, seed=2), batch_size=4)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "sgd":
            self._optimizer = schedulefree.SGDScheduleFree(self.parameters(), lr=LR, momentum=0.9)
        else:
            self._optimizer = schedulefree.AdamWScheduleFree(self.parameters(), lr=LR, betas=(0.9, 0.999))
        return self._optimizer


def trainer_for(tmp_path: Path, callbacks: list[Callback], **kwargs: Any) -> Trainer:
    settings: dict[str, Any] = {
        "default_root_dir": tmp_path,
        "max_epochs": 2,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "num_sanity_val_steps": 0,
        **kwargs,
    }
    return Trainer(callbacks=callbacks, **settings)


def reference_weights(optimizer: str, epochs: int, steps: int | None = None) -> dict[str, torch.Tensor]:
    """The documented loop: ``train()`` before each epoch's steps, ``eval()`` for validation and at the end."""
    model = Regressor(optimizer)
    opt = model.configure_optimizers()
    for _ in range(epochs):
        opt.train()
        for index, batch in enumerate(model.train_dataloader()):
            if index == steps:
                break
            loss = model._loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        opt.eval()  # validation at the end of each epoch
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_modes_and_final_weights_match_the_documented_loop(optimizer: str, tmp_path: Path) -> None:
    model = Regressor(optimizer)
    trainer = trainer_for(tmp_path, [ScheduleFree()])
    trainer.fit(model)
    assert model.modes["train"] == [True] * 12
    assert model.modes["val"] == [False] * 4
    expected = reference_weights(optimizer, 2)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    trainer.test(model)
    assert model.modes["test"] == [False] * 2


def test_without_the_callback_schedulefree_refuses_to_step(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not in train mode"):
        trainer_for(tmp_path, []).fit(Regressor())


def test_checkpoints_hold_the_eval_weights_and_resume_exactly(tmp_path: Path) -> None:
    def run(max_epochs: int, ckpt_path: str | None = None) -> Regressor:
        model = Regressor()
        checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}-{step}", save_top_k=-1)
        checkpoint_mid = ModelCheckpoint(
            dirpath=tmp_path / "mid", filename="{step}", every_n_train_steps=3, save_top_k=-1
        )
        trainer = trainer_for(
            tmp_path, [ScheduleFree(), checkpoint, checkpoint_mid], max_epochs=max_epochs, enable_checkpointing=True
        )
        trainer.fit(model, ckpt_path=ckpt_path)
        return model

    uninterrupted = run(3)
    # the epoch-end checkpoint holds the weights the documented loop has in eval mode after that epoch
    saved = torch.load(tmp_path / "ckpt" / "epoch=0-step=6.ckpt", weights_only=False)
    expected = reference_weights("adamw", 1)
    for name, value in saved["state_dict"].items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    assert saved["optimizer_states"][0]["param_groups"][0]["train_mode"] is False
    # a checkpoint written mid-epoch in train mode holds eval weights too
    mid = torch.load(tmp_path / "mid" / "step=3.ckpt", weights_only=False)
    assert mid["optimizer_states"][0]["param_groups"][0]["train_mode"] is False
    expected = reference_weights("adamw", 1, steps=3)
    for name, value in mid["state_dict"].items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    # (Lightning restarts a plain DataLoader from its first batch when resuming mid-epoch, so the exact-resume check
    # uses the checkpoint written in train mode after the epoch's last batch.)
    for ckpt in ("ckpt/epoch=0-step=6.ckpt", "mid/step=6.ckpt"):
        resumed = run(3, ckpt_path=str(tmp_path / ckpt))
        for (name, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values(), strict=True):
            assert torch.equal(a, b), (ckpt, name)


def test_composes_with_warmup(tmp_path: Path) -> None:
    lrs: list[float] = []

    class Record(Callback):
        def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    model = Regressor()
    trainer_for(tmp_path, [ScheduleFree(), Warmup(4), Record()], max_epochs=1).fit(model)
    # Warmup(4), linear from 0: step t runs at LR * (t + 1) / 4; recorded after the step, so the next step's LR
    assert lrs[:4] == pytest.approx([LR * 2 / 4, LR * 3 / 4, LR, LR], rel=1e-12)
    assert model.modes["train"] == [True] * 6


def test_range_test_runs_in_train_mode(tmp_path: Path) -> None:
    class TwoArgs(Regressor):  # the range test calls training_step(batch, batch_idx)
        def training_step(self, batch: Any, batch_idx: int = 0) -> torch.Tensor:
            return super().training_step(batch)

    model = TwoArgs()
    range_test = LRRangeTest(min_lr=1e-4, max_lr=1.0, num_steps=20, skip_start=2, skip_end=2)
    trainer_for(tmp_path, [ScheduleFree(), range_test], max_epochs=1).fit(model)
    assert model.modes["train"]
    assert all(model.modes["train"])


def test_requires_a_schedule_free_optimizer(tmp_path: Path) -> None:
    class Plain(Regressor):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=LR)

    with pytest.raises(MisconfigurationException, match=r"none of the optimizers \['AdamW'\] is schedule-free"):
        trainer_for(tmp_path, [ScheduleFree()]).fit(Plain())
    trainer_for(tmp_path, [ScheduleFree(require=False)], max_steps=1).fit(Plain())
