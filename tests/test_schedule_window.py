"""``start``/``end`` windows (torch ``SequentialLR`` hand-over) and ``Warmup(exclusive=True)`` (timm's
``warmup_prefix=False``), checked in real fits against torch's ``SequentialLR`` and timm's closed form."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch.optim import Optimizer
from torch.optim import lr_scheduler as sched

from lightning_tuning import (
    CosineAnnealing,
    CyclicLR,
    ExponentialDecay,
    InverseSqrt,
    MultiStepDecay,
    OneCycle,
    PolynomialDecay,
    StepDecay,
    Warmup,
    WarmupStableDecay,
)
from tests.lr_helpers import BASE_LRS, LRRecorder, TwoGroupModel, assert_close, fit, torch_reference

STEPS = 24

# (pack callbacks, torch SequentialLR) pairs: the pack's windows say what the milestones say
SEQUENTIAL: dict[str, tuple[Callable[[], list[Any]], Callable[[Optimizer], Any]]] = {
    "exponential_then_cosine": (
        lambda: [ExponentialDecay(0.7, interval="step", end=6), CosineAnnealing(T_max=18, start=6)],
        lambda o: sched.SequentialLR(
            o, [sched.ExponentialLR(o, 0.7), sched.CosineAnnealingLR(o, T_max=18)], milestones=[6]
        ),
    ),
    "cosine_then_step": (
        lambda: [CosineAnnealing(T_max=8, eta_min=0.001, end=8), StepDecay(3, 0.5, interval="step", start=8)],
        lambda o: sched.SequentialLR(
            o, [sched.CosineAnnealingLR(o, T_max=8, eta_min=0.001), sched.StepLR(o, 3, 0.5)], milestones=[8]
        ),
    ),
    # three schedules; the middle cosine's length is left out: it spans its window [5, 15)
    "three_windows": (
        lambda: [
            ExponentialDecay(0.8, interval="step", end=5),
            CosineAnnealing(start=5, end=15),
            MultiStepDecay([3, 6], 0.5, interval="step", start=15),
        ],
        lambda o: sched.SequentialLR(
            o,
            [
                sched.ExponentialLR(o, 0.8),
                sched.CosineAnnealingLR(o, T_max=10),
                sched.MultiStepLR(o, [3, 6], 0.5),
            ],
            milestones=[5, 15],
        ),
    ),
    "polynomial_then_exponential": (
        lambda: [PolynomialDecay(total_iters=7, power=2.0, end=7), ExponentialDecay(0.9, interval="step", start=7)],
        lambda o: sched.SequentialLR(
            o, [sched.PolynomialLR(o, total_iters=7, power=2.0), sched.ExponentialLR(o, 0.9)], milestones=[7]
        ),
    ),
}


@pytest.mark.parametrize("name", list(SEQUENTIAL))
def test_windows_match_torch_sequential_lr(name: str, tmp_path: Path) -> None:
    callbacks, scheduler = SEQUENTIAL[name]
    recorder = LRRecorder()
    fit(TwoGroupModel(), [*callbacks(), recorder], tmp_path, max_steps=STEPS)
    expected, _ = torch_reference("sgd", scheduler, STEPS)
    assert_close(recorder.lrs, expected, rel=1e-12)


def test_window_given_as_fractions_and_epochs(tmp_path: Path) -> None:
    """``end='50%'`` of a 4-epoch run of 6 steps each is step 12; the step decay from ``start='2epochs'``."""
    recorder = LRRecorder()
    fit(
        TwoGroupModel(),
        [
            ExponentialDecay(0.9, interval="step", end="50%"),
            StepDecay(2, 0.5, interval="step", start="2epochs"),
            recorder,
        ],
        tmp_path,
        max_epochs=4,
        limit_train_batches=6,
    )
    expected = [[base * (0.9**t if t < 12 else 0.5 ** ((t - 12) // 2)) for base in BASE_LRS] for t in range(24)]
    assert_close(recorder.lrs, expected, rel=1e-12)


def test_an_end_at_the_end_of_the_run_is_allowed(tmp_path: Path) -> None:
    recorder = LRRecorder()
    fit(TwoGroupModel(), [ExponentialDecay(0.9, interval="step", end=12), recorder], tmp_path, max_steps=12)
    assert_close(recorder.lrs, [[base * 0.9**t for base in BASE_LRS] for t in range(12)], rel=1e-12)


def test_one_cycle_with_a_window_spans_it_then_hands_over(tmp_path: Path) -> None:
    """``OneCycle(end=10)`` with ``total_steps`` left out is torch's ``OneCycleLR(total_steps=10)`` for 10 steps;
    from step 10 the LR is the optimizer's own again; the momentum is back at ``max_momentum``."""
    recorder = LRRecorder()
    fit(TwoGroupModel(), [OneCycle(max_lr=0.5, end=10), recorder], tmp_path, max_steps=14)
    lrs, momenta = torch_reference("sgd", lambda o: sched.OneCycleLR(o, max_lr=0.5, total_steps=10), 10)
    assert_close(recorder.lrs[:10], lrs, rel=1e-12)
    assert_close(recorder.momenta[:10], momenta, rel=1e-12)
    assert recorder.lrs[10:] == [list(BASE_LRS)] * 4
    assert recorder.momenta[10:] == [[0.95, 0.95]] * 4


def test_wsd_hands_over_at_its_end(tmp_path: Path) -> None:
    """WSD up to step 12 (stable phase inferred from the window), then an exponential decay from step 12."""
    recorder = LRRecorder()
    callbacks = [
        WarmupStableDecay(warmup=2, decay=4, decay_shape="linear", end=12),
        ExponentialDecay(0.9, interval="step", start=12),
    ]
    fit(TwoGroupModel(), [*callbacks, recorder], tmp_path, max_steps=20)

    def wsd(t: int) -> float:  # Hugging Face's get_wsd_schedule, linear shapes, min_lr_ratio 0
        if t < 2:
            return t / 2
        if t < 2 + 6:
            return 1.0
        return max(0.0, 1 - (t - 8) / 4)

    factors = [wsd(t) if t < 12 else 0.9 ** (t - 12) for t in range(20)]
    assert_close(recorder.lrs, [[base * f for base in BASE_LRS] for f in factors], rel=1e-12)


def test_inverse_sqrt_hands_over_at_its_end(tmp_path: Path) -> None:
    recorder = LRRecorder()
    fit(TwoGroupModel(), [InverseSqrt(warmup=4, end=10), recorder], tmp_path, max_steps=14)
    factors = [t / 4 if t < 4 else math.sqrt(4 / t) if t < 10 else 1.0 for t in range(14)]
    assert_close(recorder.lrs, [[base * f for base in BASE_LRS] for f in factors], rel=1e-12)


def test_cyclic_lr_window_hands_over_to_the_base_lr(tmp_path: Path) -> None:
    recorder = LRRecorder()
    cyclic = CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=2, cycle_momentum=False, end=8)
    fit(TwoGroupModel(), [cyclic, recorder], tmp_path, max_steps=12)
    lrs, _ = torch_reference(
        "sgd", lambda o: sched.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=2, cycle_momentum=False), 8
    )
    assert_close(recorder.lrs[:8], lrs, rel=1e-12)
    assert recorder.lrs[8:] == [list(BASE_LRS)] * 4


def timm_cosine_no_prefix(t: int, base: float, t_initial: int, lr_min: float, warmup_t: int, init: float) -> float:
    """timm's ``CosineLRScheduler._get_lr`` with ``warmup_prefix=False``, ``cycle_limit=1`` (its defaults)."""
    if t < warmup_t:
        return init + t * (base - init) / warmup_t
    if t >= t_initial:
        return lr_min
    return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * t / t_initial))


def test_exclusive_warmup_is_timm_without_warmup_prefix(tmp_path: Path) -> None:
    recorder = LRRecorder()
    callbacks = [Warmup(5, start_lr=1e-4, exclusive=True), CosineAnnealing(T_max=30, eta_min=1e-3)]
    fit(TwoGroupModel(), [*callbacks, recorder], tmp_path, max_steps=30)
    expected = [[timm_cosine_no_prefix(t, base, 30, 1e-3, 5, 1e-4) for base in BASE_LRS] for t in range(30)]
    assert_close(recorder.lrs, expected, rel=1e-12)


def test_exclusive_warmup_holds_every_other_factor_but_keeps_their_clocks(tmp_path: Path) -> None:
    """During the warmup only the warmup's ramp; at step 6 the step decay has already halved twice (its clock ran)."""
    recorder = LRRecorder()
    callbacks = [Warmup(6, exclusive=True), StepDecay(2, 0.5, interval="step"), ExponentialDecay(0.9, interval="step")]
    fit(TwoGroupModel(), [*callbacks, recorder], tmp_path, max_steps=10)
    factors = [(t + 1) / 6 if t < 5 else 0.5 ** (t // 2) * 0.9**t for t in range(10)]
    assert_close(recorder.lrs, [[base * f for base in BASE_LRS] for f in factors], rel=1e-12)


def test_non_exclusive_warmup_multiplies(tmp_path: Path) -> None:
    recorder = LRRecorder()
    fit(TwoGroupModel(), [Warmup(4), StepDecay(2, 0.5, interval="step"), recorder], tmp_path, max_steps=6)
    factors = [min(1.0, (t + 1) / 4) * 0.5 ** (t // 2) for t in range(6)]
    assert_close(recorder.lrs, [[base * f for base in BASE_LRS] for f in factors], rel=1e-12)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: StepDecay(2, end=0), "`StepDecay.end=0` must be at least 1"),
        (lambda: CosineAnnealing(end="soon"), "CosineAnnealing.end"),
        (lambda: Warmup(5, exclusive="yes"), "`exclusive='yes'` must be true or false"),
        (lambda: OneCycle(max_lr=0.1, end=-1), "OneCycle.end"),
    ],
    ids=["end-zero", "end-not-a-duration", "exclusive-not-bool", "negative-end"],
)
def test_invalid_window_arguments_are_refused_at_construction(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(MisconfigurationException, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        (lambda: [ExponentialDecay(0.9, interval="step", start=8, end=8)], "not after the schedule's start \\(8\\)"),
        (
            lambda: [CosineAnnealing(end=40)],
            "CosineAnnealing.end is at step 40, but the run has 20 steps \\(0..19\\): "
            "the schedule would never hand over",
        ),
        (lambda: [OneCycle(max_lr=0.1, total_steps=12, end=10)], "its window closes after 10"),
    ],
    ids=["end-at-start", "end-beyond-run", "cycle-longer-than-window"],
)
def test_invalid_windows_are_refused_before_training(
    callbacks: Callable[[], list[Any]], message: str, tmp_path: Path
) -> None:
    model = TwoGroupModel()
    with pytest.raises(MisconfigurationException, match=message):
        fit(model, callbacks(), tmp_path, max_steps=20)
    assert model.global_step == 0


def test_end_joins_the_state_key_only_when_set() -> None:
    """Checkpoints written before ``end`` existed still match a schedule without one."""
    assert "'end'" not in StepDecay(2).state_key
    assert "'end'" in StepDecay(2, end=4).state_key
    assert StepDecay(2).state_key != StepDecay(2, end=4).state_key
    assert "exclusive" not in Warmup(5).state_key
