"""PlateauDecay against torch's ReduceLROnPlateau, in composition, on resume and at every validation cadence."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lightning_tuning import PlateauDecay, Warmup
from lightning_tuning.schedules import PlateauTracker, compose_lr
from tests.lr_helpers import BASE_LRS, LRRecorder, TwoGroupModel, fit, make_optimizer, param_groups, quiet_trainer

METRICS = [1.0, 0.95, 0.94, 0.93, 0.5, 0.49, 0.48, 0.47, 0.46, 0.45, 0.45, 0.9, math.nan, 0.44, 0.3, 0.31, 0.32]


def torch_plateau_lrs(values: list[float], **kwargs: Any) -> list[list[float]]:
    optimizer = make_optimizer("sgd", param_groups(torch.nn.Linear(32, 2)))
    scheduler = ReduceLROnPlateau(optimizer, **kwargs)
    lrs = []
    for value in values:
        scheduler.step(value)
        lrs.append([group["lr"] for group in optimizer.param_groups])
    return lrs


def finite_metrics(mode: str) -> list[float]:
    """The finite part of METRICS, mirrored for ``mode="max"`` so that it plateaus the same way."""
    values = [v for v in METRICS if math.isfinite(v)]
    return [1.0 - v for v in values] if mode == "max" else values


def plateau_kwargs(mode: str, threshold_mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "factor": 0.5,
        "patience": 1,
        "threshold": 0.05,
        "threshold_mode": threshold_mode,
        "cooldown": 1,
    }


@pytest.mark.parametrize(("mode", "threshold_mode"), list(itertools.product(["min", "max"], ["rel", "abs"])))
def test_tracker_matches_torch(mode: str, threshold_mode: str) -> None:
    values = finite_metrics(mode)
    kwargs = {
        **plateau_kwargs(mode, threshold_mode),
        "min_lr": [0.01, 0.001],
    }
    expected = torch_plateau_lrs(values, **kwargs)
    tracker = PlateauTracker(mode, 0.5, 1, 0.05, threshold_mode, 1)  # type: ignore[arg-type]
    lrs = list(BASE_LRS)
    for value, want in zip(values, expected, strict=True):
        # the tracker sees the LRs the optimizer holds, as torch's ReduceLROnPlateau does
        tracker.update(value, lrs, [0.01, 0.001], 1e-8)
        lrs = [
            compose_lr(base, [], [(tracker.scale(g), min_lr)])
            for g, (base, min_lr) in enumerate(zip(BASE_LRS, [0.01, 0.001], strict=True))
        ]
        assert lrs == pytest.approx(want, rel=1e-10)


def test_nan_is_never_an_improvement() -> None:
    tracker = PlateauTracker("min", 0.5, 0, 0.0, "rel", 0)
    tracker.update(1.0, [1.0], [0.0], 1e-8)
    assert tracker.update(math.nan, [1.0], [0.0], 1e-8)
    assert tracker.best == 1.0


class ScriptedValLoss(TwoGroupModel):
    """Logs the next value of a script as ``val_loss`` at each validation run."""

    def __init__(self, values: list[float]) -> None:
        super().__init__("sgd")
        self.values = values
        self.validations = 0

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.log("val_loss", 1e9)
            return
        self.log("val_loss", self.values[self.validations % len(self.values)])
        self.validations += 1

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        return None


class LRAfterValidation(Callback):
    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_validation_end(self, trainer: Trainer, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])


@pytest.mark.parametrize(("mode", "threshold_mode"), list(itertools.product(["min", "max"], ["rel", "abs"])))
def test_fit_matches_torch_each_validation(mode: str, threshold_mode: str, tmp_path: Any) -> None:
    values = finite_metrics(mode)
    kwargs = {
        **plateau_kwargs(mode, threshold_mode),
        "min_lr": 0.004,
    }
    # self.log stores float32: feed torch the values the callback really sees
    values = [float(torch.tensor(v, dtype=torch.float32)) for v in values]
    watcher = LRAfterValidation()
    plateau = PlateauDecay(monitor="val_loss", **kwargs)  # type: ignore[arg-type]
    # PlateauDecay must act before the watcher reads the LR; callbacks run in list order.
    fit(
        ScriptedValLoss(values),
        [plateau, watcher],
        tmp_path,
        max_epochs=len(values),
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    assert len(watcher.lrs) == len(values)
    for got, want in zip(watcher.lrs, torch_plateau_lrs(values, **kwargs), strict=True):
        assert got == pytest.approx(want, rel=1e-10)


def test_val_check_interval_inside_epoch(tmp_path: Any) -> None:
    values = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    watcher = LRAfterValidation()
    fit(
        ScriptedValLoss(values),
        [PlateauDecay(factor=0.5, patience=0), watcher],
        tmp_path,
        max_epochs=1,
        limit_train_batches=12,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    assert len(watcher.lrs) == 6
    # the first validation sets `best`; each later one is a plateau and halves the LR
    assert [lrs[0] for lrs in watcher.lrs] == pytest.approx([BASE_LRS[0] * 0.5**k for k in range(6)], rel=1e-12)


def test_check_val_every_n_epoch(tmp_path: Any) -> None:
    watcher = LRAfterValidation()
    fit(
        ScriptedValLoss([1.0]),
        [PlateauDecay(factor=0.5, patience=0), watcher],
        tmp_path,
        max_epochs=6,
        limit_train_batches=2,
        check_val_every_n_epoch=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    assert [lrs[0] for lrs in watcher.lrs] == pytest.approx([0.1, 0.05, 0.025], rel=1e-12)


def test_composes_with_warmup_and_min_lr_bounds_the_final_lr(tmp_path: Any) -> None:
    recorder = LRRecorder()
    warmup = Warmup(4)
    plateau = PlateauDecay(factor=0.1, patience=0, min_lr=0.02)
    fit(
        ScriptedValLoss([1.0]),
        [plateau, recorder, warmup],
        tmp_path,
        max_epochs=4,
        limit_train_batches=4,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    lrs = [step[0] for step in recorder.lrs]
    # epoch 0: linear warmup (t+1)/4 of 0.1; afterwards each validation cuts by 10x, floored at min_lr=0.02
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1], rel=1e-12)
    assert lrs[4:8] == pytest.approx([0.1] * 4, rel=1e-12)  # the first validation only sets `best`
    assert lrs[8:] == pytest.approx([0.02] * 8, rel=1e-12)
    # the second group (base 0.03) is floored at 0.02 as well: 0.003 would be below min_lr
    assert recorder.lrs[-1][1] == pytest.approx(0.02, rel=1e-12)


def test_unknown_monitor_lists_logged_metrics(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"monitor='val_acc'.*Logged metrics: \['val_loss'\]"):
        fit(
            ScriptedValLoss([1.0]),
            [PlateauDecay(monitor="val_acc")],
            tmp_path,
            max_epochs=1,
            limit_train_batches=2,
            limit_val_batches=1,
        )


def test_resume_restores_best_counters_and_scale(tmp_path: Any) -> None:
    values = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8]
    kwargs = {"factor": 0.5, "patience": 1, "cooldown": 1}
    straight = LRRecorder()
    fit(
        ScriptedValLoss(values),
        [PlateauDecay(**kwargs), straight],
        tmp_path / "a",
        max_epochs=10,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )

    first = PlateauDecay(**kwargs)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    fit(
        ScriptedValLoss(values),
        [first, checkpoint],
        tmp_path / "b",
        max_epochs=5,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_checkpointing=True,
    )
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    state = saved["callbacks"][first.state_key]["trackers"]["0"]
    assert state["best"] == pytest.approx(0.9)
    assert state["num_reductions"] >= 1

    model = ScriptedValLoss(values)
    model.validations = 5
    resumed = LRRecorder()
    trainer = quiet_trainer(
        default_root_dir=tmp_path / "c",
        max_epochs=10,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[PlateauDecay(**kwargs), resumed],
    )
    trainer.fit(model, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed.lrs == straight.lrs[10:]
