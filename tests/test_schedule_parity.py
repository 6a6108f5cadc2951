"""Each schedule callback, alone in a real ``Trainer.fit``, matches the torch scheduler of the same name.

The reference is torch's own scheduler stepped once per optimizer step (or once per epoch), on an identical
optimizer with two param groups of different base LRs, for SGD with momentum and for Adam.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lightning.pytorch import Callback
from torch.optim import lr_scheduler as torch_sched

from lightning_tuning import (
    CosineAnnealing,
    CyclicLR,
    ExponentialDecay,
    MultiStepDecay,
    OneCycle,
    PolynomialDecay,
    StepDecay,
)
from tests.lr_helpers import LRRecorder, TwoGroupModel, assert_close, fit, torch_reference

STEPS = 40

CASES: dict[str, tuple[Callable[[], Callback], Callable[[Any], Any]]] = {
    "step": (lambda: StepDecay(step_size=7, gamma=0.5, interval="step"), lambda o: torch_sched.StepLR(o, 7, 0.5)),
    "multistep": (
        lambda: MultiStepDecay(milestones=[5, 12, 30], gamma=0.3, interval="step"),
        lambda o: torch_sched.MultiStepLR(o, [5, 12, 30], 0.3),
    ),
    "exponential": (
        lambda: ExponentialDecay(gamma=0.9, interval="step"),
        lambda o: torch_sched.ExponentialLR(o, 0.9),
    ),
    "cosine": (
        lambda: CosineAnnealing(T_max=STEPS, eta_min=0.001),
        lambda o: torch_sched.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.001),
    ),
    "cosine_restarts": (
        lambda: CosineAnnealing(T_0=3, T_mult=2, eta_min=0.002),
        lambda o: torch_sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.002),
    ),
    "polynomial": (
        lambda: PolynomialDecay(total_iters=30, power=2.0),
        lambda o: torch_sched.PolynomialLR(o, total_iters=30, power=2.0),
    ),
    "cyclic_triangular": (
        lambda: CyclicLR(base_lr=[0.01, 0.002], max_lr=[0.1, 0.05], step_size_up=4, step_size_down=6),
        lambda o: torch_sched.CyclicLR(o, [0.01, 0.002], [0.1, 0.05], step_size_up=4, step_size_down=6),
    ),
    "cyclic_triangular2": (
        lambda: CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=3, mode="triangular2"),
        lambda o: torch_sched.CyclicLR(o, 0.01, 0.1, step_size_up=3, mode="triangular2"),
    ),
    "cyclic_exp_range": (
        lambda: CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=5, mode="exp_range", gamma=0.97),
        lambda o: torch_sched.CyclicLR(o, 0.01, 0.1, step_size_up=5, mode="exp_range", gamma=0.97),
    ),
    "one_cycle": (
        lambda: OneCycle(max_lr=[0.2, 0.05], total_steps=STEPS),
        lambda o: torch_sched.OneCycleLR(o, max_lr=[0.2, 0.05], total_steps=STEPS),
    ),
    "one_cycle_three_phase_linear": (
        lambda: OneCycle(max_lr=0.3, total_steps=STEPS, three_phase=True, anneal_strategy="linear", pct_start=0.25),
        lambda o: torch_sched.OneCycleLR(
            o, max_lr=0.3, total_steps=STEPS, three_phase=True, anneal_strategy="linear", pct_start=0.25
        ),
    ),
}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_per_step(case: str, optimizer: str, tmp_path: Any) -> None:
    make_callback, make_scheduler = CASES[case]
    recorder = LRRecorder()
    fit(
        TwoGroupModel(optimizer),
        [make_callback(), recorder],
        tmp_path,
        max_steps=STEPS,
        limit_train_batches=16,
        max_epochs=-1,
    )
    expected_lrs, expected_momenta = torch_reference(optimizer, make_scheduler, STEPS)
    assert_close(recorder.lrs, expected_lrs)
    assert_close(recorder.momenta, expected_momenta)


EPOCH_CASES: dict[str, tuple[Callable[[], Callback], Callable[[Any], Any]]] = {
    "step": (lambda: StepDecay(step_size=2, gamma=0.5), lambda o: torch_sched.StepLR(o, 2, 0.5)),
    "multistep": (lambda: MultiStepDecay(milestones=[1, 3]), lambda o: torch_sched.MultiStepLR(o, [1, 3])),
    "exponential": (lambda: ExponentialDecay(gamma=0.8), lambda o: torch_sched.ExponentialLR(o, 0.8)),
    "cosine": (
        lambda: CosineAnnealing(T_max=5, interval="epoch"),
        lambda o: torch_sched.CosineAnnealingLR(o, T_max=5),
    ),
}


@pytest.mark.parametrize("case", list(EPOCH_CASES))
def test_matches_torch_per_epoch(case: str, tmp_path: Any) -> None:
    make_callback, make_scheduler = EPOCH_CASES[case]
    recorder = LRRecorder()
    fit(TwoGroupModel("sgd"), [make_callback(), recorder], tmp_path, max_epochs=5, limit_train_batches=3)
    expected_lrs, _ = torch_reference("sgd", make_scheduler, 15, steps_per_epoch=3)
    assert_close(recorder.lrs, expected_lrs)
