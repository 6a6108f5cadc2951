"""The LR range test: its math against closed forms, and a sweep that leaves training exactly as it was."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing import event_accumulator as ea

from lightning_tuning import LRRangeTest, OneCycle
from lightning_tuning.callbacks.lr_range_test import host_copy
from lightning_tuning.lr_find import lr_find_command
from lightning_tuning.range_test import min_div_10, smooth, steepest, sweep_lrs, valley
from tests.lr_helpers import BASE_LRS, LRRecorder, TwoGroupModel, quiet_trainer

# ---- math ------------------------------------------------------------------------------------------------------


def test_sweep_endpoints_and_spacing() -> None:
    lrs = sweep_lrs(1e-6, 1.0, 7, "exponential")
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[-1] == pytest.approx(1.0)
    assert [b / a for a, b in itertools.pairwise(lrs)] == pytest.approx([10.0] * 6)
    assert sweep_lrs(0.0, 1.0, 5, "linear") == pytest.approx([0, 0.25, 0.5, 0.75, 1])


def test_smoothing_is_a_bias_corrected_ema() -> None:
    losses = [4.0, 2.0, 3.0]
    beta = 0.5
    # by hand: averages 2, 2, 2.5; corrections 0.5, 0.75, 0.875
    assert smooth(losses, beta) == pytest.approx([4.0, 2 / 0.75, 2.5 / 0.875])


def test_suggestions_on_a_curve_with_known_answers() -> None:
    lrs = sweep_lrs(1e-5, 1.0, 101, "exponential")
    # loss falls along a tanh in log-lr, steepest at lr = 1e-3, minimum at the end of the fall, then blows up
    losses = [1 - math.tanh(math.log10(lr) + 3) + (100 * (lr - 0.1) ** 2 if lr > 0.1 else 0) for lr in lrs]
    assert steepest(lrs, losses, 0, 0) == pytest.approx(1e-3, rel=0.05)
    minimum = lrs[min(range(101), key=losses.__getitem__)]
    assert min_div_10(lrs, losses) == pytest.approx(minimum / 10)
    # valley: between where the fall starts and a tenth of the minimum's LR
    picked = valley(lrs, losses)
    assert lrs[0] < picked < minimum / 10


# ---- in a real fit ---------------------------------------------------------------------------------------------


def trainer(tmp_path: Path, callbacks: list[Callback], **kwargs: Any) -> Trainer:
    settings = {"max_epochs": 2, "limit_train_batches": 8, "limit_val_batches": 0, "enable_checkpointing": False,
                **kwargs}  # fmt: skip
    return quiet_trainer(default_root_dir=tmp_path, callbacks=callbacks, **settings)


def final_weights(tmp_path: Path, callbacks: list[Callback], **kwargs: Any) -> tuple[dict[str, Any], Trainer]:
    torch.manual_seed(0)
    model = TwoGroupModel("adam")
    run = trainer(tmp_path, callbacks, **kwargs)
    run.fit(model)
    return {k: v.clone() for k, v in model.state_dict().items()}, run


@pytest.mark.parametrize("max_lr", [1.0, 1e6], ids=["normal", "diverging"])
def test_training_afterwards_is_bit_identical(max_lr: float, tmp_path: Path) -> None:
    without, plain = final_weights(tmp_path / "a", [])
    test = LRRangeTest(min_lr=1e-5, max_lr=max_lr, num_steps=30, apply="none")
    with_test, tested = final_weights(tmp_path / "b", [test])
    for name, tensor in without.items():
        assert torch.equal(with_test[name], tensor), name
    assert tested.global_step == plain.global_step
    assert tested.optimizers[0].state_dict()["state"][0]["step"] == plain.optimizers[0].state_dict()["state"][0]["step"]
    if max_lr == 1e6:
        assert len(test.results["lrs"]) < 30, "a diverging sweep stops early"


def test_groups_keep_their_ratio_and_auto_max_lr_takes_the_suggestion(tmp_path: Path) -> None:
    test = LRRangeTest(min_lr=1e-4, max_lr=1.0, num_steps=20, apply="none", skip_start=2, skip_end=2)
    recorder = LRRecorder()
    run = trainer(tmp_path, [test, OneCycle(max_lr="auto", cycle_momentum=False), recorder])
    run.fit(TwoGroupModel("sgd"))
    chosen = test.results["chosen"]
    assert test.suggested_lrs == {0: pytest.approx([chosen, chosen * BASE_LRS[1] / BASE_LRS[0]])}
    peak = max(lrs[0] for lrs in recorder.lrs)
    assert peak == pytest.approx(chosen, rel=1e-3)
    assert max(lrs[1] for lrs in recorder.lrs) == pytest.approx(peak * BASE_LRS[1] / BASE_LRS[0], rel=1e-3)


def test_apply_sets_the_optimizer_lr(tmp_path: Path) -> None:
    test = LRRangeTest(min_lr=1e-4, max_lr=1.0, num_steps=20)
    recorder = LRRecorder()
    trainer(tmp_path, [test, recorder]).fit(TwoGroupModel("sgd"))
    assert recorder.lrs[0] == pytest.approx(test.suggested_lrs[0])


def test_accumulation_makes_num_steps_optimizer_steps(tmp_path: Path) -> None:
    steps: list[int] = []

    class CountSteps(Callback):
        def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
            steps.append(len(test.results["lrs"]))

    test = LRRangeTest(min_lr=1e-6, max_lr=1e-3, num_steps=12, apply="none")
    trainer(tmp_path, [test, CountSteps()], accumulate_grad_batches=3).fit(TwoGroupModel("sgd"))
    assert steps == [12]


def test_lr_find_command_prints_yaml_and_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logger = TensorBoardLogger(tmp_path)
    run = trainer(tmp_path, [], logger=logger)
    results = lr_find_command(run, TwoGroupModel("sgd"))
    out = capsys.readouterr().out
    assert f"lr: {results['chosen']:.3g}" in out
    assert "class_path: lightning_tuning.BaseLR" in out
    png = Path(logger.log_dir) / "lr_range_test.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert png.stat().st_size > 1000
    assert run.global_step == 0, "lr_find trains nothing after the test"
    logger.experiment.flush()
    events = ea.EventAccumulator(logger.log_dir, size_guidance={ea.SCALARS: 0, ea.IMAGES: 0}).Reload()
    assert "lr_range_test" in events.Tags()["images"]
    image = events.Images("lr_range_test")[0]
    assert (image.width, image.height) == (700, 400)
    # lr_find_command's default LRRangeTest sweeps 1e-7 -> 10 exponentially over 100 steps (it may stop early)
    logged_lrs = [event.value for event in events.Scalars("lr_range_test/lr")]
    assert len(logged_lrs) >= 3
    assert logged_lrs == pytest.approx([1e-7 * 1e8 ** (i / 99) for i in range(len(logged_lrs))], rel=1e-6)


class DumpSuggestion(Callback):
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
        test = next(cb for cb in trainer.callbacks if isinstance(cb, LRRangeTest))
        path = Path(self.directory) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"suggested": test.suggested_lrs[0], "losses": test.results["losses"]}))


@pytest.mark.slow
def test_ddp_ranks_get_the_same_suggestion(tmp_path: Path) -> None:
    test = LRRangeTest(min_lr=1e-4, max_lr=1.0, num_steps=15, skip_start=2, skip_end=2)
    run = trainer(tmp_path, [test, DumpSuggestion(str(tmp_path))], accelerator="cpu", devices=2,
                  strategy="ddp_spawn", max_epochs=1)  # fmt: skip
    run.fit(TwoGroupModel("sgd"))
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0 == rank1
    assert len(rank0["losses"]) >= 5


def test_snapshot_copies_every_tensor_and_keeps_the_containers() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.Adam(module.parameters())
    module(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = module.state_dict()
    snapshot = host_copy(state)
    assert snapshot._metadata == state._metadata, "load_state_dict reads the module versions from _metadata"
    for key, tensor in state.items():
        assert snapshot[key] is not tensor
        assert snapshot[key].device.type == "cpu"
        assert torch.equal(snapshot[key], tensor)
    optimizer_snapshot = host_copy(optimizer.state_dict())
    module[0].weight.data.add_(1.0)
    optimizer.step()
    assert not torch.equal(optimizer_snapshot["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    optimizer.load_state_dict(optimizer_snapshot)
    assert optimizer.state_dict()["state"][0]["step"] == optimizer_snapshot["state"][0]["step"]
