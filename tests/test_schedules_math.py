"""The new schedule math against closed forms and documented vectors, and torch's own schedulers where torch has one.

References: the formulas as the peers document them (``/work/shared/reference/lr_anchors.md`` §d: HF WSD, timm cosine
and warmup vectors) and torch 2.13's ``LinearLR``, ``PolynomialLR``, ``CosineAnnealingWarmRestarts`` run here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_sched

from lightning_tuning.schedules.cosine_cycles import cosine_cycles_length, cosine_cycles_lr, cycle_position
from lightning_tuning.schedules.inverse_sqrt import inverse_sqrt_factor
from lightning_tuning.schedules.polynomial_end import polynomial_end_factor, polynomial_lr
from lightning_tuning.schedules.warmup_from import warmup_from_factor, warmup_from_lr
from lightning_tuning.schedules.wsd import wsd_factor, wsd_stable_length

BASES = (0.1, 0.03)


def torch_lrs(make: Callable[[torch.optim.Optimizer], Any], steps: int) -> list[list[float]]:
    """LR of each of ``steps`` optimizer steps (two groups) under a torch scheduler stepped after every step."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASES]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASES, strict=True)], lr=BASES[0])
    scheduler = make(optimizer)
    out = []
    for _ in range(steps):
        out.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return out


# ---- WSD ---------------------------------------------------------------------------------------------------------


def test_wsd_documented_vector() -> None:
    """HF WSD, W 2, S 3, D 4, m 0.1, cosine decay (lr_anchors §d)."""
    expected = [0.1, 0.55, 1, 1, 1, 1, 0.86820, 0.55, 0.23180, 0.1]
    got = [wsd_factor(t, 2, 3, 4, "linear", "cosine", 0.1) for t in range(10)]
    assert got == pytest.approx(expected, abs=5e-6)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_wsd_phases_closed_form(shape: str) -> None:
    warmup, stable, decay, m = 4, 3, 5, 0.2
    shapes = {
        "linear": (lambda p: p, lambda p: 1 - p),
        "cosine": (lambda p: (1 - math.cos(math.pi * p)) / 2, lambda p: (1 + math.cos(math.pi * p)) / 2),
        "1-sqrt": (lambda p: 1 - math.sqrt(1 - p), lambda p: 1 - math.sqrt(p)),
    }
    up, down = shapes[shape]
    for t in range(warmup + stable + decay + 3):
        if t < warmup:
            expected = m + (1 - m) * up(t / warmup)
        elif t < warmup + stable:
            expected = 1.0
        elif t < warmup + stable + decay:
            expected = m + (1 - m) * down((t - warmup - stable) / decay)
        else:
            expected = m
        assert wsd_factor(t, warmup, stable, decay, shape, shape, m) == pytest.approx(expected, abs=1e-15), t  # type: ignore[arg-type]


def test_wsd_without_warmup_or_stable() -> None:
    assert [wsd_factor(t, 0, 0, 2, "linear", "linear") for t in range(3)] == [1.0, 0.5, 0.0]
    assert [wsd_factor(t, 2, 0, 0) for t in range(3)] == [0.0, 0.5, 0.0]  # no decay: min_lr_ratio right away


def test_wsd_stable_length() -> None:
    assert wsd_stable_length(100, 10, 20) == 70
    assert wsd_stable_length(30, 10, 20) == 0
    with pytest.raises(ValueError, match=r"warmup \(10\) \+ decay \(25\) = 35 steps is longer than the run \(30"):
        wsd_stable_length(30, 10, 25)


# ---- inverse square root ------------------------------------------------------------------------------------------


def test_inverse_sqrt_closed_form() -> None:
    # warmup 8: t/8, then sqrt(8 / t) (timescale = warmup)
    assert [inverse_sqrt_factor(t, 8) for t in range(9)] == pytest.approx([t / 8 for t in range(8)] + [1.0], abs=1e-15)
    for t in (8, 9, 32, 200, 10_000):
        assert inverse_sqrt_factor(t, 8) == pytest.approx(math.sqrt(8 / t), rel=1e-14)
    # timescale 100, warmup 10: 1 at t = 10, 1/2 at 10 + 3 * 100
    assert inverse_sqrt_factor(10, 10, timescale=100) == 1.0
    assert inverse_sqrt_factor(310, 10, timescale=100) == pytest.approx(0.5, rel=1e-15)
    # no warmup: HF's timescale 10 000
    assert inverse_sqrt_factor(0, 0) == 1.0
    assert inverse_sqrt_factor(30_000, 0) == pytest.approx(0.5, rel=1e-15)


# ---- warmup from an absolute LR -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("start_factor", "total_iters"), [(0.25, 4), (1e-3, 5), (1 / 3, 1), (0.9, 7)])
def test_warmup_from_lr_is_torch_linear_lr(start_factor: float, total_iters: int) -> None:
    """torch ``LinearLR(start_factor=s, total_iters=N)`` == warmup of length ``N`` from ``s * base`` per group."""
    expected = torch_lrs(lambda o: torch_sched.LinearLR(o, start_factor=start_factor, total_iters=total_iters), 12)
    for group, base in enumerate(BASES):
        got = [warmup_from_lr(t, total_iters, base, start_factor * base) for t in range(12)]
        assert got == pytest.approx([row[group] for row in expected], rel=1e-12, abs=1e-16)


def test_warmup_from_documented_timm_vector() -> None:
    """timm warmup 3 from 0.1 with ``warmup_prefix=True`` (lr_anchors §d): ``.1, .4, .7, 1``."""
    assert [warmup_from_lr(t, 3, 1.0, 0.1) for t in range(5)] == pytest.approx([0.1, 0.4, 0.7, 1.0, 1.0], abs=1e-15)


def test_warmup_from_zero_starts_at_zero_and_factor_handles_zero_base() -> None:
    assert warmup_from_lr(0, 10, 0.5, 0.0) == 0.0
    assert warmup_from_lr(9, 10, 0.5, 0.0) == pytest.approx(0.45, rel=1e-15)
    assert warmup_from_lr(10, 10, 0.5, 0.0) == 0.5
    assert warmup_from_factor(3, 4, 0.5, 0.1) == pytest.approx((0.1 + 0.4 * 3 / 4) / 0.5, rel=1e-15)
    assert warmup_from_factor(0, 5, 0.0, 0.1) == 1.0
    assert warmup_from_lr(0, 0, 0.5, 0.0) == 0.5  # length 0: no warmup


# ---- polynomial decay to an end LR --------------------------------------------------------------------------------


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_polynomial_to_zero_is_torch_polynomial_lr(power: float) -> None:
    expected = torch_lrs(lambda o: torch_sched.PolynomialLR(o, total_iters=6, power=power), 10)
    for group, base in enumerate(BASES):
        got = [polynomial_lr(t, 6, power, base, 0.0) for t in range(10)]
        assert got == pytest.approx([row[group] for row in expected], rel=1e-12, abs=1e-16)


def test_polynomial_end_lr_and_k_decay_closed_form() -> None:
    base, end, total, power = 0.1, 0.01, 8, 2.0
    for t in range(12):
        progress = min(t, total) / total
        assert polynomial_lr(t, total, power, base, end) == pytest.approx(
            end + (base - end) * (1 - progress) ** power, abs=1e-16
        )
        progress_k = min(t, total) ** 1.5 / total**1.5
        assert polynomial_lr(t, total, power, base, end, k_decay=1.5) == pytest.approx(
            end + (base - end) * (1 - progress_k) ** power, abs=1e-16
        )
    assert polynomial_end_factor(8, 8, 1.0, 0.1, 0.01) == pytest.approx(0.1, rel=1e-15)
    assert polynomial_lr(3, 0, 1.0, 0.1, 0.01) == 0.1


# ---- cosine in cycles ---------------------------------------------------------------------------------------------


def test_cosine_cycles_is_torch_warm_restarts() -> None:
    """Integer T_mult, no limit, no decay, k = 1: torch's CosineAnnealingWarmRestarts (stepped once per step)."""
    expected = torch_lrs(lambda o: torch_sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.002), 50)
    for group, base in enumerate(BASES):
        got = [cosine_cycles_lr(t, base, 3, 2, 0.002) for t in range(50)]
        assert got == pytest.approx([row[group] for row in expected], rel=1e-12)
    # lr_anchors §d vector: T_0=3, T_mult=2
    assert [cosine_cycles_lr(t, 1.0, 3, 2) for t in range(10)] == pytest.approx(
        [1, 0.75, 0.25, 1, 0.93301, 0.75, 0.5, 0.25, 0.06699, 1], abs=5e-6
    )


def test_cosine_cycles_documented_k_decay_vectors() -> None:
    """timm, T 10, t = 0, 2, ..., 10 (lr_anchors §d): k = 1 and k = 2."""
    k1 = [cosine_cycles_lr(t, 1.0, 10, cycle_limit=1) for t in range(0, 11, 2)]
    k2 = [cosine_cycles_lr(t, 1.0, 10, cycle_limit=1, k_decay=2.0) for t in range(0, 11, 2)]
    assert k1 == pytest.approx([1, 0.90451, 0.65451, 0.34549, 0.09549, 0], abs=5e-6)
    assert k2 == pytest.approx([1, 0.99606, 0.93815, 0.71289, 0.28711, 0], abs=5e-6)


def test_cosine_cycles_float_mult_decay_and_limit() -> None:
    """T_0 4, T_mult 1.5: cycles [0, 4), [4, 10), [10, 19); decay 0.5 per restart; limit 3 holds eta_min from 19."""
    t_0, mult, eta, decay = 4.0, 1.5, 0.01, 0.5
    starts, lengths = [0.0, 4.0, 10.0, 19.0], [4.0, 6.0, 9.0]
    for t in range(25):
        if t >= 19:
            expected = eta
        else:
            i = max(k for k in range(3) if starts[k] <= t)
            peak = decay**i
            expected = eta + (peak - eta) * (1 + math.cos(math.pi * (t - starts[i]) / lengths[i])) / 2
        got = cosine_cycles_lr(t, 1.0, t_0, mult, eta, cycle_limit=3, cycle_decay=decay)
        assert got == pytest.approx(expected, abs=1e-15), t
    assert cosine_cycles_length(t_0, mult, 3) == 19.0
    assert cosine_cycles_length(5, 1, 3) == 15


def test_cycle_position_at_every_boundary() -> None:
    """Every cycle start is a restart, for integer and float T_mult, including far cycles."""
    for t_0, mult in ((2, 3.0), (10, 1.5), (7, 2.0), (3, 1.0), (5, 1.1)):
        start, length = 0.0, float(t_0)
        for i in range(12):
            if float(start).is_integer():
                assert cycle_position(start, t_0, mult)[:2] == (i, 0.0), (t_0, mult, i)
            start += length
            length *= mult
