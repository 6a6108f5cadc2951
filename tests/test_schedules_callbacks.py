"""The new schedules and arguments as callbacks in real fits, against the peers' own LRs and torch's schedulers.

References: ``PEER_VECTORS`` (recorded from transformers 5.24.0 and timm 1.0.31, see ``test_schedules_peers.py``),
torch 2.13's ``LinearLR``/``SequentialLR``/``CosineAnnealingLR`` run in the test, and closed forms written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from torch.optim import lr_scheduler as torch_sched

from lightning_tuning import CosineAnnealing, InverseSqrt, PolynomialDecay, Warmup, WarmupStableDecay
from tests.lr_helpers import BASE_LRS, LRRecorder, TwoGroupModel, quiet_trainer, torch_reference
from tests.test_schedule_resume import Crash, CrashAtStep
from tests.test_schedules_peers import PEER_VECTORS


class OneGroupModel(BoringModel):
    def __init__(self, lr: float = 1.0) -> None:
        super().__init__()
        self.lr = lr

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.layer.parameters(), lr=self.lr, momentum=0.9)


def run(callbacks: list[Callback], steps: int, model: Any = None, **kwargs: Any) -> list[list[float]]:
    recorder = LRRecorder()
    settings = {"max_steps": steps, "limit_val_batches": 0, "enable_checkpointing": False, **kwargs}
    quiet_trainer(callbacks=[*callbacks, recorder], **settings).fit(model or TwoGroupModel())
    return recorder.lrs


def by_group(vector: list[list[float]]) -> list[list[float]]:
    """PEER_VECTORS hold one list per group; the recorder one list per step."""
    return [list(step) for step in zip(*vector, strict=True)]


def close(got: list[list[float]], expected: list[list[float]], tol: float = 1e-15) -> None:
    assert len(got) == len(expected)
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == pytest.approx(e, rel=1e-13, abs=tol), f"step {step}"


# ---- Hugging Face -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("warmup_shape", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("decay_shape", ["linear", "cosine", "1-sqrt"])
def test_wsd_is_hugging_face(warmup_shape: str, decay_shape: str) -> None:
    """get_wsd_schedule(opt, 3, 5, num_stable_steps=4, warmup_type, decay_type, min_lr_ratio=0.1)."""
    callback = WarmupStableDecay(
        3, decay=5, stable=4, warmup_shape=warmup_shape, decay_shape=decay_shape, min_lr_ratio=0.1
    )  # type: ignore[arg-type]
    close(run([callback], 16), by_group(PEER_VECTORS[f"wsd_{warmup_shape}_{decay_shape}"]))


def test_wsd_stable_phase_fills_the_run() -> None:
    """get_wsd_schedule(opt, 2, 4, num_training_steps=10): stable = 10 - 2 - 4, from the run's max_steps."""
    callback = WarmupStableDecay(2, decay=4)
    factors = PEER_VECTORS["wsd_total"][0][:10]
    close(run([callback], 10), [[f * base for base in BASE_LRS] for f in factors])
    assert callback.phases() == (2, 4, 4)


def test_wsd_durations_resolve_against_the_run() -> None:
    callback = WarmupStableDecay("10%", decay="30%", decay_shape="1-sqrt", min_lr_ratio=0.05)
    lrs = run([callback], 40)
    assert callback.phases() == (4, 24, 12)
    for t, step in enumerate(lrs):
        if t < 4:
            expected = 0.05 + 0.95 * t / 4
        elif t < 28:
            expected = 1.0
        else:
            expected = 0.05 + 0.95 * (1 - math.sqrt((t - 28) / 12))
        assert step == pytest.approx([expected * base for base in BASE_LRS], rel=1e-14), t


def test_inverse_sqrt_is_hugging_face() -> None:
    close(run([InverseSqrt(4)], 12), by_group(PEER_VECTORS["invsqrt_w4"]))
    close(run([InverseSqrt(4, timescale=10)], 12), by_group(PEER_VECTORS["invsqrt_w4_ts10"]))


def test_hf_linear_schedule_with_warmup() -> None:
    """get_linear_schedule_with_warmup(opt, 3, 12) = Warmup(3, start_lr=0) + PolynomialDecay(9, start=after_warmup)."""
    callbacks = [Warmup(3, start_lr=0.0), PolynomialDecay(total_iters=9, power=1.0, start="after_warmup")]
    close(run(callbacks, 14), by_group(PEER_VECTORS["hf_linear"]))


def test_hf_polynomial_decay_with_lr_end() -> None:
    """get_polynomial_decay_schedule_with_warmup(opt, 3, 12, lr_end=0.01, power=2) on a one-LR optimizer."""
    callbacks = [
        Warmup(3, start_lr=0.0),
        PolynomialDecay(total_iters=9, power=2.0, end_lr=0.01, start="after_warmup"),
    ]
    close(run(callbacks, 15, OneGroupModel(0.1)), by_group(PEER_VECTORS["hf_poly"]))


# ---- timm ---------------------------------------------------------------------------------------------------------


def test_timm_cosine_with_prefixed_warmup() -> None:
    """CosineLRScheduler(t_initial=10, lr_min=1e-3, warmup_t=3, warmup_lr_init=5e-3, warmup_prefix=True)."""
    callbacks = [Warmup(3, start_lr=0.005), CosineAnnealing(T_max=10, eta_min=0.001, start="after_warmup")]
    close(run(callbacks, 16), by_group(PEER_VECTORS["timm_cos_prefix"]))


def test_timm_cycles_float_mult_decay_limit() -> None:
    """CosineLRScheduler(t_initial=4, lr_min=0.01, cycle_mul=1.5, cycle_decay=0.5, cycle_limit=3)."""
    callback = CosineAnnealing(T_0=4, T_mult=1.5, eta_min=0.01, cycle_limit=3, cycle_decay=0.5)
    close(run([callback], 24, OneGroupModel(1.0)), by_group(PEER_VECTORS["timm_cos_cycles"]))


def test_timm_k_decay() -> None:
    close(run([CosineAnnealing(T_max=10, k_decay=2.0)], 12, OneGroupModel(1.0)), by_group(PEER_VECTORS["timm_cos_k2"]))
    callback = CosineAnnealing(T_0=6, T_mult=2, eta_min=0.001, cycle_limit=2, cycle_decay=0.8, k_decay=0.5)
    close(run([callback], 22), by_group(PEER_VECTORS["timm_cos_k05_cycles"]))


def test_timm_poly_with_k_decay_and_lr_min() -> None:
    callbacks = [
        Warmup(2, start_lr=0.0),
        PolynomialDecay(total_iters=10, power=2.0, end_lr=0.01, k_decay=1.5, start="after_warmup"),
    ]
    close(run(callbacks, 15, OneGroupModel(0.1)), by_group(PEER_VECTORS["timm_poly"]))


# ---- torch ----------------------------------------------------------------------------------------------------------


def test_torch_linear_lr_by_start_lr_and_by_start_factor() -> None:
    """LinearLR(start_factor=s, total_iters=N): Warmup(N, start_lr=[s * lr]) or Warmup(N + 1, start_factor=...)."""
    s, n = 0.25, 4
    expected, _ = torch_reference("sgd", lambda o: torch_sched.LinearLR(o, start_factor=s, total_iters=n), 10)
    close(run([Warmup(n, start_lr=[s * lr for lr in BASE_LRS])], 10), expected, tol=1e-17)
    relative = (s * (n + 1) - 1) / n
    close(run([Warmup(n + 1, start_factor=relative)], 10), expected, tol=1e-17)


def test_torch_sequential_lr_warmup_then_cosine() -> None:
    """SequentialLR([LinearLR(0.1, 3), CosineAnnealingLR(T_max=5)], milestones=[3])."""

    def sequential(optimizer: Any) -> Any:
        warmup = torch_sched.LinearLR(optimizer, start_factor=0.1, total_iters=3)
        cosine = torch_sched.CosineAnnealingLR(optimizer, T_max=5)
        return torch_sched.SequentialLR(optimizer, [warmup, cosine], milestones=[3])

    expected, _ = torch_reference("sgd", sequential, 9)
    callbacks = [Warmup(3, start_lr=[0.1 * lr for lr in BASE_LRS]), CosineAnnealing(T_max=5, start="after_warmup")]
    close(run(callbacks, 9), expected, tol=1e-12)


def test_plain_cosine_arguments_keep_torch_and_the_old_state_key() -> None:
    expected, _ = torch_reference("sgd", lambda o: torch_sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2), 20)
    close(run([CosineAnnealing(T_0=3, T_mult=2)], 20), expected, tol=1e-12)
    assert "cycle_limit" not in CosineAnnealing(T_0=3).state_key
    assert "end_lr" not in PolynomialDecay().state_key
    assert "start_lr" not in Warmup(3).state_key


# ---- resume, DDP, errors ----------------------------------------------------------------------------------------


NEW_SCHEDULES: dict[str, Callable[[], list[Callback]]] = {
    "wsd": lambda: [WarmupStableDecay(3, decay="40%", decay_shape="1-sqrt", min_lr_ratio=0.1)],
    "inverse_sqrt": lambda: [InverseSqrt(4, timescale=6)],
    "warmup_start_lr_cosine_cycles": lambda: [
        Warmup(3, start_lr=0.001),
        CosineAnnealing(T_0=4, T_mult=1.5, cycle_limit=2, cycle_decay=0.5, k_decay=1.5, start="after_warmup"),
    ],
    "poly_end": lambda: [PolynomialDecay(power=2.0, end_lr=[0.01, 0.002], k_decay=0.7)],
}


@pytest.mark.parametrize("name", list(NEW_SCHEDULES))
def test_resume_mid_epoch_is_exact(name: str, tmp_path: Path) -> None:
    settings = {"max_epochs": 3, "limit_train_batches": 7, "limit_val_batches": 0}
    straight = LRRecorder()
    quiet_trainer(default_root_dir=tmp_path / "a", callbacks=[*NEW_SCHEDULES[name](), straight], **settings).fit(
        TwoGroupModel()
    )
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1, save_last=True)
    with pytest.raises(Crash):
        quiet_trainer(
            default_root_dir=tmp_path / "b", callbacks=[*NEW_SCHEDULES[name](), checkpoint, CrashAtStep(10)], **settings
        ).fit(TwoGroupModel())
    resumed = LRRecorder()
    quiet_trainer(default_root_dir=tmp_path / "c", callbacks=[*NEW_SCHEDULES[name](), resumed], **settings).fit(
        TwoGroupModel(), ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )
    assert len(straight.lrs) == 21
    assert resumed.lrs == straight.lrs[8:]


class LogsLR(TwoGroupModel):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        output = super().training_step(batch, batch_idx)
        lrs = [group["lr"] for group in self.trainer.optimizers[0].param_groups]
        self.log("lr_last", lrs[0])
        self.log("lr_max", lrs[0], on_step=False, on_epoch=True, reduce_fx="max")
        self.log("lr_min_pg1", lrs[1], on_step=False, on_epoch=True, reduce_fx="min")
        return output


@pytest.mark.slow
def test_wsd_under_ddp_counts_global_optimizer_steps(tmp_path: Path) -> None:
    """2 processes, 8 steps of WSD(2, stable 3, decay 3, linear, m 0.25): LR factors 0.25, 0.625, 1, 1, 1, 1, 0.75, 0.5
    on every rank (each rank's optimizer steps once per global step)."""
    trainer = quiet_trainer(
        default_root_dir=tmp_path,
        callbacks=[WarmupStableDecay(2, decay=3, stable=3, decay_shape="linear", min_lr_ratio=0.25)],
        strategy="ddp_spawn",
        accelerator="cpu",
        devices=2,
        max_steps=8,
        limit_val_batches=0,
        enable_checkpointing=False,
    )
    trainer.fit(LogsLR())
    assert float(trainer.callback_metrics["lr_last"]) == pytest.approx(0.5 * BASE_LRS[0], rel=1e-6)
    assert float(trainer.callback_metrics["lr_max"]) == pytest.approx(BASE_LRS[0], rel=1e-6)
    assert float(trainer.callback_metrics["lr_min_pg1"]) == pytest.approx(0.25 * BASE_LRS[1], rel=1e-6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: WarmupStableDecay(decay_shape="exp"), r"`decay_shape='exp'` is not allowed"),
        (lambda: WarmupStableDecay(min_lr_ratio=1.5), r"`min_lr_ratio=1.5` must lie in \[0, 1\]"),
        (lambda: WarmupStableDecay(warmup="3 weeks"), r"WarmupStableDecay.warmup='3 weeks'. is not a duration"),
        (lambda: InverseSqrt(timescale=0), r"`InverseSqrt.timescale=0` must be at least 1"),
        (lambda: Warmup(5, start_factor=0.1, start_lr=0.0), r"either `start_factor=0.1` .* or `start_lr=0.0`"),
        (lambda: Warmup(5, kind="exponential", start_lr=0.0), r"`start_lr` is for kind='linear'"),
        (lambda: Warmup(5, start_lr=-1e-3), r"`start_lr=-0.001` must be a number >= 0"),
        (lambda: PolynomialDecay(end_lr=-1.0), r"`end_lr=-1.0` must be a number >= 0"),
        (lambda: PolynomialDecay(k_decay=0), r"`k_decay=0` must be a number > 0"),
        (lambda: CosineAnnealing(T_0=5, T_mult=0.5), r"`T_mult=0.5` must be a number >= 1"),
        (lambda: CosineAnnealing(T_0=5, cycle_limit=0), r"`cycle_limit=0` must be an integer >= 1"),
        (lambda: CosineAnnealing(T_max=5, cycle_limit=2), r"`cycle_limit=2` shape warm restarts, which need `T_0`"),
        (lambda: CosineAnnealing(T_0=5, cycle_decay=0.0), r"`cycle_decay=0.0` must be a number > 0"),
    ],
)
def test_bad_arguments_name_themselves(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(MisconfigurationException, match=message):
        make()


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        (lambda: [WarmupStableDecay(10, decay=15)], r"warmup \(10\) \+ decay \(15\) = 25 steps is longer than the run"),
        (lambda: [WarmupStableDecay(5, decay=5, stable=11)], r"= 21 steps is longer than the run \(20 steps\)"),
        (lambda: [PolynomialDecay(end_lr=0.05)], r"end_lr=0.05 is not below the learning rate 0.03"),
        (lambda: [Warmup(3, start_lr=[0.0, 0.0, 0.0])], r"`Warmup.start_lr` has 3 values but the optimizer has 2"),
    ],
)
def test_bad_arguments_for_the_run_fail_before_training(callbacks: Callable[[], list[Callback]], message: str) -> None:
    model = TwoGroupModel()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(MisconfigurationException, match=message):
        run(callbacks(), 20, model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
