"""Warmup shapes, composition, progress counting, ownership and logging of the schedule callbacks."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import MixedPrecision
from torch.optim import lr_scheduler as torch_sched

from lightning_tuning import CosineAnnealing, CyclicLR, OneCycle, StepDecay, Warmup
from lightning_tuning.callbacks._loss_watch import NonFiniteLossWatch
from tests.lr_helpers import BASE_LRS, LRRecorder, TwoGroupModel, assert_close, fit, torch_reference

# ---- warmup shapes, against their closed forms -------------------------------------------------------------------


def warmup_run(tmp_path: Any, warmup: Warmup, steps: int = 12, optimizer: str = "sgd") -> list[float]:
    recorder = LRRecorder()
    fit(TwoGroupModel(optimizer), [warmup, recorder], tmp_path, max_steps=steps, max_epochs=-1)
    return [lrs[0] / BASE_LRS[0] for lrs in recorder.lrs]


def test_linear_warmup_never_wastes_a_step_at_zero(tmp_path: Any) -> None:
    factors = warmup_run(tmp_path, Warmup(4))
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0] + [1.0] * 8, rel=1e-12)


def test_linear_warmup_from_start_factor(tmp_path: Any) -> None:
    factors = warmup_run(tmp_path, Warmup(5, start_factor=0.5))
    assert factors[:6] == pytest.approx([0.5 + 0.5 * (t + 1) / 5 for t in range(5)] + [1.0], rel=1e-12)


def test_exponential_warmup(tmp_path: Any) -> None:
    factors = warmup_run(tmp_path, Warmup(2, kind="exponential"), steps=20)
    expected = [1 - math.exp(-(t + 1) / 2) for t in range(20)]
    # exactly 1 once within 1e-3 of it: from t + 1 >= 2 * ln(1000) = 13.8
    expected = [1.0 if t >= 13 else e for t, e in enumerate(expected)]
    assert factors == pytest.approx(expected, rel=1e-12)


def test_constant_warmup(tmp_path: Any) -> None:
    factors = warmup_run(tmp_path, Warmup(3, kind="constant", start_factor=0.1))
    assert factors[:5] == pytest.approx([0.1, 0.1, 0.1, 1.0, 1.0], rel=1e-12)


def test_untuned_length_from_adam_beta2(tmp_path: Any) -> None:
    class Beta2Model(TwoGroupModel):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=BASE_LRS[0], betas=(0.9, 0.75))

    recorder = LRRecorder()
    fit(Beta2Model(), [Warmup("untuned"), recorder], tmp_path, max_steps=10, max_epochs=-1)
    # 2 / (1 - 0.75) = 8 steps of linear warmup (Ma & Yarats, 2019)
    assert [lrs[0] / BASE_LRS[0] for lrs in recorder.lrs][:9] == pytest.approx([(t + 1) / 8 for t in range(8)] + [1])


def test_untuned_needs_betas(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match="has no `betas`"):
        warmup_run(tmp_path, Warmup("untuned"), optimizer="sgd")


# ---- composition ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["warmup_first", "warmup_last"])
def test_warmup_then_cosine_matches_torch_sequential(order: str, tmp_path: Any) -> None:
    # torch: LinearLR(start 1/4 -> 1 over 3 steps) then cosine over the rest, switching at step 3.
    total = 20
    callbacks: list[Callback] = [Warmup(4), CosineAnnealing(start="after_warmup")]
    if order == "warmup_last":
        callbacks.reverse()
    recorder = LRRecorder()
    fit(TwoGroupModel("adam"), [*callbacks, recorder], tmp_path, max_steps=total, max_epochs=-1)

    def reference(optimizer: torch.optim.Optimizer) -> torch_sched.SequentialLR:
        warm = torch_sched.LinearLR(optimizer, start_factor=0.25, total_iters=3)
        cosine = torch_sched.CosineAnnealingLR(optimizer, T_max=total - 3)
        return torch_sched.SequentialLR(optimizer, [warm, cosine], milestones=[3])

    expected, _ = torch_reference("adam", reference, total)
    assert_close(recorder.lrs, expected, rel=1e-9)


def test_factors_multiply(tmp_path: Any) -> None:
    recorder = LRRecorder()
    fit(
        TwoGroupModel(),
        [StepDecay(3, gamma=0.5, interval="step"), Warmup(6), recorder],
        tmp_path,
        max_steps=9,
        max_epochs=-1,
    )
    for t, lrs in enumerate(recorder.lrs):
        for base, lr in zip(BASE_LRS, lrs, strict=True):
            assert lr == pytest.approx(base * min(1, (t + 1) / 6) * 0.5 ** (t // 3), rel=1e-12)


def test_warmup_in_front_of_one_cycle_is_order_independent(tmp_path: Any) -> None:
    runs = []
    for flip in (False, True):
        callbacks: list[Callback] = [Warmup(5), OneCycle(max_lr=0.5)]
        if flip:
            callbacks.reverse()
        recorder = LRRecorder()
        fit(TwoGroupModel(), [*callbacks, recorder], tmp_path, max_steps=15, max_epochs=-1)
        runs.append((recorder.lrs, recorder.momenta))
    assert runs[0] == runs[1]


# ---- progress counting -----------------------------------------------------------------------------------------


def test_gradient_accumulation_counts_optimizer_steps(tmp_path: Any) -> None:
    recorder = LRRecorder()
    fit(
        TwoGroupModel(),
        [StepDecay(2, gamma=0.5, interval="step"), recorder],
        tmp_path,
        max_epochs=2,
        limit_train_batches=9,
        accumulate_grad_batches=3,
    )
    expected, _ = torch_reference("sgd", lambda o: torch_sched.StepLR(o, 2, 0.5), 6)
    assert_close(recorder.lrs, expected)


def test_cosine_default_length_is_the_run(tmp_path: Any) -> None:
    recorder = LRRecorder()
    fit(
        TwoGroupModel(),
        [CosineAnnealing(), recorder],
        tmp_path,
        max_epochs=3,
        limit_train_batches=5,
        accumulate_grad_batches=2,
    )
    # 5 batches with accumulation 2 -> 3 optimizer steps per epoch -> 9 in all
    expected, _ = torch_reference("sgd", lambda o: torch_sched.CosineAnnealingLR(o, T_max=9), 9)
    assert_close(recorder.lrs, expected)


def test_val_check_interval_does_not_disturb_progress(tmp_path: Any) -> None:
    recorder = LRRecorder()
    fit(
        TwoGroupModel(),
        [CosineAnnealing(T_max=12), recorder],
        tmp_path,
        max_steps=12,
        max_epochs=-1,
        limit_train_batches=6,
        val_check_interval=2,
        limit_val_batches=1,
    )
    expected, _ = torch_reference("sgd", lambda o: torch_sched.CosineAnnealingLR(o, T_max=12), 12)
    assert_close(recorder.lrs, expected)


class TwoOptimizerManual(BoringModel):
    """Manual optimization with two optimizers; the second steps only every other batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.other = torch.nn.Linear(32, 2)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        first, second = self.optimizers()
        loss = self.step(batch) + self.other(batch).sum()
        self.manual_backward(loss)
        first.step()
        first.zero_grad()
        if batch_idx % 2 == 0:
            second.step()
        second.zero_grad()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.SGD(self.layer.parameters(), lr=0.1), torch.optim.SGD(self.other.parameters(), lr=0.2)]


def test_manual_optimization_counts_each_optimizer(tmp_path: Any) -> None:
    lrs: dict[int, list[float]] = {0: [], 1: []}

    class PerOptimizer(Callback):
        def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
            for index, optimizer in enumerate(trainer.optimizers):
                optimizer.register_step_post_hook(lambda opt, *_, i=index: lrs[i].append(opt.param_groups[0]["lr"]))

    fit(
        TwoOptimizerManual(),
        [StepDecay(2, gamma=0.5, interval="step", optimizers=[1]), Warmup(4, optimizers=[0]), PerOptimizer()],
        tmp_path,
        max_epochs=1,
        limit_train_batches=8,
    )
    # optimizer 0 steps every batch and only warms up; optimizer 1 steps every other batch and decays every
    # second of ITS OWN steps
    assert lrs[0] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert lrs[1] == pytest.approx([0.2, 0.2, 0.1, 0.1])


class InfGradientAt(TwoGroupModel):
    """Makes the loss infinite at the given batches so the GradScaler skips those optimizer steps."""

    def __init__(self, bad_batches: set[int]) -> None:
        super().__init__("sgd")
        self.bad_batches = bad_batches

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = super().training_step(batch, batch_idx)
        if batch_idx in self.bad_batches:
            out["loss"] = out["loss"] * float("inf")
        return out


def test_grad_scaler_skipped_steps_do_not_advance_schedules(tmp_path: Any) -> None:
    seen: list[float] = []

    class LRAtBatchStart(Callback):
        def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    recorder = LRRecorder()
    fit(
        InfGradientAt({2, 3}),
        [StepDecay(1, gamma=0.5, interval="step"), recorder, LRAtBatchStart()],
        tmp_path,
        max_epochs=1,
        limit_train_batches=8,
        # a small initial scale, so that only the infinite batches overflow
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1.0))],
    )
    # 8 batches, 2 skipped by the scaler: 6 real steps, decaying once per real step
    assert len(recorder.lrs) == 6
    assert [lrs[0] for lrs in recorder.lrs] == pytest.approx([0.1 * 0.5**k for k in range(6)], rel=1e-12)
    # batches 2 and 3 were tried with the LR of the step that had not happened yet
    assert seen[:5] == pytest.approx([0.1, 0.05, 0.025, 0.025, 0.025], rel=1e-12)


# ---- ownership, monitor and logging ----------------------------------------------------------------------------


def test_refuses_a_module_scheduler_on_the_same_optimizer(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"StepLR.*schedule its learning rate too"):
        fit(BoringModel(), [Warmup(2)], tmp_path, max_steps=3, max_epochs=-1)


def test_learning_rate_monitor_sees_the_scheduled_lr(tmp_path: Any) -> None:
    logger = CSVLogger(tmp_path)
    fit(
        TwoGroupModel(),
        [Warmup(4), LearningRateMonitor(logging_interval="step")],
        tmp_path,
        max_steps=6,
        max_epochs=-1,
        logger=logger,
        log_every_n_steps=1,
    )
    rows = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    # with a LearningRateMonitor present the pack leaves LR logging to it: one column, not two
    assert header.count("lr-SGD/pg1") == 1
    monitor = header.index("lr-SGD/pg1")
    monitored = [float(r.split(",")[monitor]) for r in rows[1:] if r.split(",")[monitor]]
    assert monitored == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_lr_is_logged_under_learning_rate_monitors_names(tmp_path: Any) -> None:
    logger = CSVLogger(tmp_path)
    fit(TwoGroupModel(), [Warmup(4)], tmp_path, max_steps=6, max_epochs=-1, logger=logger, log_every_n_steps=1)
    rows = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("lr-SGD/pg1")
    logged = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    # Warmup(4) of base LR 0.1: (t + 1) / 4 of it
    assert logged == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_cyclic_momentum_is_logged(tmp_path: Any) -> None:
    logger = CSVLogger(tmp_path)
    fit(
        TwoGroupModel("adam"),
        [CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=2)],
        tmp_path,
        max_steps=4,
        max_epochs=-1,
        logger=logger,
        log_every_n_steps=1,
    )
    header = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    expected = {"lr-Adam/pg1", "lr-Adam/pg2", "lr-Adam/pg1-momentum", "lr-Adam/pg2-momentum"}
    assert expected <= set(header.split(","))


def test_past_the_end_cosine_holds_eta_min(tmp_path: Any) -> None:
    recorder = LRRecorder()
    fit(TwoGroupModel(), [CosineAnnealing(T_max=4, eta_min=0.001), recorder], tmp_path, max_steps=8, max_epochs=-1)
    assert [lrs[0] for lrs in recorder.lrs][4:] == pytest.approx([0.001] * 4)


def test_deferred_loss_watch_reads_the_flag_only_on_flush() -> None:
    # the accelerator path: nothing is read back per step, the first flush after a NaN names the steps it lies in
    watch = NonFiniteLossWatch(defer=True)
    assert not watch.pending
    assert watch.update(torch.tensor(1.0), 1) is None
    assert watch.pending
    assert watch.update(torch.tensor(float("nan")), 2) is None
    assert watch.update(torch.tensor(0.5), 3) is None
    assert watch.flush(3) == "The training loss became NaN or infinite between optimizer steps 1 and 3"
    assert watch.flush(3) is None, "a flush resets the flag"
    assert watch.update(torch.tensor(0.5), 4) is None
    assert watch.flush(4) is None
    assert watch.update(torch.tensor([1.0, float("inf")]), 5) is None
    assert watch.flush(6) == "The training loss became NaN or infinite between optimizer steps 5 and 6"


def test_loss_watch_checks_cpu_losses_at_once() -> None:
    watch = NonFiniteLossWatch()
    assert watch.update(torch.tensor(2.0), 1) is None
    assert watch.update(torch.tensor(float("-inf")), 2) == "The training loss is -inf at optimizer step 2"
    assert not watch.pending, "nothing is deferred on the CPU"
    assert watch.flush(2) is None
