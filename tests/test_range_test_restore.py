"""The sweep trains like the training step and leaves the module as it found it: metrics, train/eval flags, dropout."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from lightning_tuning import LRRangeTest
from lightning_tuning.lr_find import lr_find_command
from tests.lr_helpers import quiet_trainer


def classification_data(samples: int = 64) -> TensorDataset:
    generator = torch.Generator().manual_seed(123)
    x = torch.randn(samples, 8, generator=generator)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())


class FrozenBackboneClassifier(LightningModule):
    """A user's fine-tuning module: a frozen backbone kept in eval mode, a dropout head, torchmetrics accuracy logged
    from ``training_step(self, batch)`` (no ``batch_idx``), two param groups in AdamW."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.head = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
        self.train_acc = MulticlassAccuracy(num_classes=3)

    def training_step(self, batch: Any) -> torch.Tensor:
        x, y = batch
        logits = self.head(self.backbone(x))
        self.train_acc(logits, y)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return nn.functional.cross_entropy(logits, y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        weights = [p for n, p in self.head.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in self.head.named_parameters() if n.endswith("bias")]
        return torch.optim.AdamW(
            [{"params": weights, "weight_decay": 0.1}, {"params": biases, "weight_decay": 0.0, "lr": 5e-4}], lr=1e-3
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(classification_data(), batch_size=8, shuffle=True)


class StateAtTrainStart(Callback):
    """Placed after the range test: what the module looks like when real training begins."""

    def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.modes = {name: module.training for name, module in pl_module.named_modules()}
        self.metric_updates = int(pl_module.train_acc.update_count)
        self.metric_state = {k: v.clone() for k, v in pl_module.train_acc.metric_state.items()}


def run(tmp_path: Path, range_test: LRRangeTest | None) -> tuple[FrozenBackboneClassifier, Trainer, StateAtTrainStart]:
    seed_everything(7)
    model = FrozenBackboneClassifier()
    probe = StateAtTrainStart()
    callbacks = [range_test, probe] if range_test is not None else [probe]
    trainer = quiet_trainer(default_root_dir=tmp_path, callbacks=callbacks, max_epochs=2, limit_val_batches=0,
                            enable_checkpointing=False)  # fmt: skip
    trainer.fit(model)
    return model, trainer, probe


def test_range_test_with_apply_none_ends_bit_identical(tmp_path: Path) -> None:
    plain, plain_trainer, plain_start = run(tmp_path / "plain", None)
    test = LRRangeTest(min_lr=1e-5, max_lr=10.0, num_steps=40, apply="none")
    tested, tested_trainer, tested_start = run(tmp_path / "tested", test)
    assert len(test.results["lrs"]) >= 10, "the sweep ran and trained the head"
    # the reference is the module as constructed: backbone in eval, everything else training, no metric update
    expected_modes = {name: not name.startswith("backbone") for name, _ in FrozenBackboneClassifier().named_modules()}
    assert plain_start.modes == expected_modes
    assert tested_start.modes == expected_modes
    assert tested_start.metric_updates == 0
    for name, value in tested_start.metric_state.items():
        assert torch.equal(value, torch.zeros_like(value)), name
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tested.state_dict()[name], tensor), name
    assert tested.backbone.training is False
    assert torch.equal(tested_trainer.callback_metrics["train_acc"], plain_trainer.callback_metrics["train_acc"])
    assert tested_trainer.global_step == plain_trainer.global_step


class ClippedRegression(LightningModule):
    """A linear regression whose gradients are far above the clipping norm; records the weights at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen.append(torch.cat([p.detach().flatten() for p in self.parameters()]).clone())
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader:
        x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(x, 100 * x.sum(1, keepdim=True)), batch_size=32)


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_the_sweep_clips_gradients_like_the_trainer(tmp_path: Path, algorithm: str) -> None:
    clip = 0.01
    model = ClippedRegression()
    test = LRRangeTest(min_lr=1e-3, max_lr=1.0, num_steps=12, apply="none")
    quiet_trainer(default_root_dir=tmp_path, callbacks=[test], max_epochs=1, limit_train_batches=1,
                  limit_val_batches=0, enable_checkpointing=False, gradient_clip_val=clip,
                  gradient_clip_algorithm=algorithm).fit(model)  # fmt: skip
    lrs = test.results["lrs"]
    assert len(lrs) == 12
    # an SGD step moves the weights by lr * clipped gradient: its norm <= clip (norm) or each entry <= clip (value)
    for step, lr in enumerate(lrs[:-1]):
        move = model.seen[step + 1] - model.seen[step]
        size = move.norm() if algorithm == "norm" else move.abs().max()
        # 1 % for float32 rounding of weights ~1 moved by ~1e-5; unclipped, the move would be ~1e6 times larger
        assert size <= lr * clip * 1.01, f"step {step}: moved {size:.3g} > lr * clip = {lr * clip:.3g}"
        assert size >= lr * clip * 0.99, "the raw gradient is far larger, so the clip is what binds"


class SometimesNone(ClippedRegression):
    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.calls = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        self.calls += 1
        loss = super().training_step(batch, batch_idx)
        return None if self.every and batch_idx % self.every else loss


def test_none_outputs_are_skipped_like_lightning(tmp_path: Path) -> None:
    model = SometimesNone(every=2)
    test = LRRangeTest(min_lr=1e-6, max_lr=1e-4, num_steps=10, apply="none")
    quiet_trainer(default_root_dir=tmp_path, callbacks=[test], max_epochs=1, limit_train_batches=1).fit(model)
    assert len(test.results["lrs"]) == 10
    # batches 0, 2, ..., 18 gave the 10 losses, the odd ones in between returned None and were skipped; then the
    # one real training batch
    assert model.calls == 19 + 1
    assert all(math.isfinite(loss) for loss in test.results["losses"])


def test_a_module_that_never_returns_a_loss_is_reported(tmp_path: Path) -> None:
    model = SometimesNone(every=10**9)
    model.every = 10**9  # batch_idx % every != 0 except at 0: one loss, then None forever
    test = LRRangeTest(min_lr=1e-6, max_lr=1e-4, num_steps=10, apply="none")
    with pytest.raises(MisconfigurationException, match="returned None for every batch"):
        quiet_trainer(default_root_dir=tmp_path, callbacks=[test], max_epochs=1, limit_train_batches=1).fit(model)


class NanLoss(ClippedRegression):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return super().training_step(batch, batch_idx) * float("nan")


def test_a_loss_not_finite_from_the_first_step_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match=r"loss was nan at the first step.*not finite"):
        quiet_trainer(default_root_dir=tmp_path, callbacks=[LRRangeTest()], max_epochs=1).fit(NanLoss())
    trainer = quiet_trainer(default_root_dir=tmp_path, max_epochs=1)
    with pytest.raises(MisconfigurationException, match="first step"):
        lr_find_command(trainer, NanLoss())


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"min_lr": float("nan")}, "min_lr"),
        ({"min_lr": 0.0}, "min_lr"),
        ({"min_lr": float("inf"), "max_lr": float("inf")}, "min_lr"),
        ({"max_lr": float("nan")}, "max_lr"),
        ({"max_lr": float("inf")}, "max_lr"),
        ({"max_lr": 1e-8}, "max_lr"),
        ({"divergence_threshold": float("nan")}, "divergence_threshold"),
        ({"divergence_threshold": float("inf")}, "divergence_threshold"),
        ({"divergence_threshold": 1.0}, "divergence_threshold"),
        ({"smoothing": float("nan")}, "smoothing"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"num_steps": 9}, "num_steps"),
        ({"num_steps": 12.0}, "num_steps"),
        ({"num_steps": True}, "num_steps"),
        ({"suggestion": "steepest", "num_steps": 17}, "num_steps"),
        ({"suggestion": "fastest"}, "suggestion"),
        ({"mode": "log"}, "mode"),
        ({"apply": "module"}, "apply"),
        ({"skip_start": -1}, "skip_start"),
        ({"optimizer_index": 0.5}, "optimizer_index"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(MisconfigurationException, match=rf"`{argument}="):
        LRRangeTest(**kwargs)


def test_steepest_with_just_enough_points_is_accepted() -> None:
    assert LRRangeTest(suggestion="steepest", num_steps=18).num_steps == 18
    assert LRRangeTest(suggestion="steepest", num_steps=10, skip_start=2, skip_end=2).skip_end == 2
