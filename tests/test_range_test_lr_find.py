"""``lr_find``: Lightning's clean tuner exit, nothing left behind, and a snippet that pastes back into ``fit``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_tuning import BaseLR, LRRangeTest
from lightning_tuning.cli import main
from lightning_tuning.lr_find import lr_find_command
from tests.lr_helpers import quiet_trainer

MODEL = "tests.test_range_test_lr_find.GroupedRegression"


class GroupedRegression(LightningModule):
    """A regression with its own AdamW: weights (decay 0.1) and biases (decay 0, half the LR), betas (0.8, 0.95)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        weights = [p for n, p in self.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in self.named_parameters() if n.endswith("bias")]
        groups = [{"params": weights, "weight_decay": 0.1}, {"params": biases, "weight_decay": 0.0, "lr": 5e-4}]
        return torch.optim.AdamW(groups, lr=1e-3, betas=(0.8, 0.95))

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(256, 8, generator=generator)
        y = x @ torch.randn(8, 1, generator=generator) + 0.05 * torch.randn(256, 1, generator=generator)
        return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def teardown(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        self.events.append("teardown:fit" if stage == "fit" else f"teardown:{stage}")

    def on_exception(self, trainer: Trainer, pl_module: Any, exception: BaseException) -> None:
        self.events.append(f"exception:{type(exception).__name__}")

    def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
        self.events.append("train_end")


class StatusLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[str] = []

    @property
    def name(self) -> str:
        return "status"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def finalize(self, status: str) -> None:
        self.statuses.append(status)


def test_lr_find_exits_through_the_clean_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorder, logger = Recorder(), StatusLogger()
    checkpoints = tmp_path / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=checkpoints, save_on_exception=True, save_last=True)
    trainer = quiet_trainer(default_root_dir=tmp_path, logger=logger, callbacks=[recorder, checkpoint], max_epochs=3)
    callbacks_before = list(trainer.callbacks)
    results = lr_find_command(trainer, GroupedRegression(), min_lr=1e-5, max_lr=10.0, num_steps=60)
    assert results is not None
    assert recorder.events == ["teardown:fit"], "teardown ran; no on_exception, and training never started"
    assert logger.statuses == ["success"]
    assert not checkpoints.exists() or not any(checkpoints.iterdir()), "no checkpoint is written"
    assert trainer.callbacks == callbacks_before, "the inserted LRRangeTest and the stopper are gone"
    assert trainer.state.finished
    assert trainer.global_step == 0
    assert capsys.readouterr().out.count("class_path: lightning_tuning.BaseLR") == 1


def test_lr_find_options_override_the_configured_test(tmp_path: Path) -> None:
    configured = LRRangeTest(num_steps=30, apply="none")
    trainer = quiet_trainer(default_root_dir=tmp_path, callbacks=[configured], max_epochs=1)
    results = lr_find_command(trainer, GroupedRegression(), min_lr=1e-4, max_lr=1.0, num_steps=20)
    assert results["lrs"][0] == pytest.approx(1e-4)
    assert len(results["lrs"]) <= 20
    assert trainer.callbacks[0] is configured, "the user's own test is put back"


def snippet_of(output: str) -> str:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# LR range test ("))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end]) + "\n"


SHORT = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--trainer.enable_checkpointing=false", "--dashboard=null"]  # fmt: skip


def test_the_printed_snippet_pastes_back_into_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [f"--model={MODEL}", f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1", *SHORT]
    main(["lr_find", *args, "--num_steps=60", "--min_lr=1e-5"])
    snippet = snippet_of(capsys.readouterr().out)
    assert "trainer:\n  callbacks+:\n    - class_path: lightning_tuning.BaseLR\n      init_args:\n" in snippet
    chosen = float(re.search(r"^        lr: (\S+)$", snippet, re.MULTILINE).group(1))
    assert 1e-5 <= chosen <= 10
    path = tmp_path / "snippet.yaml"
    path.write_text(snippet)
    cli = main(["fit", *args, "--trainer.limit_train_batches=2", "--config", str(path)])
    groups = cli.trainer.optimizers[0].param_groups
    assert isinstance(cli.trainer.optimizers[0], torch.optim.AdamW), "the module's own optimizer"
    assert [group["weight_decay"] for group in groups] == [0.1, 0.0]
    assert all(group["betas"] == (0.8, 0.95) for group in groups)
    # the module's ratio (5e-4 / 1e-3) is kept around the suggestion; no schedule, so the LR is still the same
    assert [group["lr"] for group in groups] == pytest.approx([chosen, chosen * 0.5])
    assert any(isinstance(callback, BaseLR) for callback in cli.trainer.callbacks)


def test_lr_find_help_lists_the_range_test_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["lr_find", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--min_lr", "--max_lr", "--num_steps", "--mode", "--smoothing", "--divergence_threshold",
                   "--suggestion", "--skip_start", "--skip_end"):  # fmt: skip
        assert option in out, option


class ScheduledRegression(GroupedRegression):
    def configure_optimizers(self) -> Any:
        optimizer = super().configure_optimizers()
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)}


def test_base_lr_scales_the_module_schedule_too(tmp_path: Path) -> None:
    lrs: list[list[float]] = []

    class Watch(Callback):
        def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
            lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    trainer = quiet_trainer(default_root_dir=tmp_path, callbacks=[BaseLR(0.02), Watch()], max_epochs=3,
                            limit_train_batches=1, enable_checkpointing=False)  # fmt: skip
    trainer.fit(ScheduledRegression())
    # StepLR halves every epoch from the scaled bases 0.02 and 0.01 (the module's 1e-3 and 5e-4, times 20)
    assert lrs == [pytest.approx([0.02 * 0.5**epoch, 0.01 * 0.5**epoch]) for epoch in range(3)]


@pytest.mark.parametrize("lr", [0.0, -1.0, float("nan"), float("inf"), True])
def test_base_lr_rejects_bad_values(lr: float) -> None:
    with pytest.raises(Exception, match="`lr="):
        BaseLR(lr)
