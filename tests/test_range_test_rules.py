"""The range test's suggestion rules: scripted curves with a known falling stretch, and least squares, where a
full-batch SGD step diverges above 2/h (h the top Hessian eigenvalue, computed here with ``torch.linalg.eigvalsh``)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from lightning_tuning.range_test import (
    RangeTestWarning,
    falling_stretch,
    min_div_10,
    noise,
    smooth,
    smoothed_noise,
    steepest,
    suggest,
    sweep_lrs,
    valley,
)

RULES = {
    "valley": valley,
    "min_div_10": min_div_10,
    "steepest": lambda lrs, losses: steepest(lrs, losses, 0, 0),
}


def quietly(rule, *args):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RangeTestWarning)
        return rule(*args)


# ---- scripted curves --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RULES))
def test_issue_curve_rising_after_one_fall(name: str) -> None:
    # falls from lr 1 to lr 2, then only rises: every rule must stay on [1, 2], never take the largest LR
    lrs = [float(i) for i in range(1, 11)]
    losses = [10, 9, 9.5, 11, 13, 14, 15, 16, 17, 18]
    assert 1.0 <= quietly(RULES[name], lrs, losses) <= 2.0


@pytest.mark.parametrize("name", list(RULES))
def test_issue_curve_with_blow_up_at_the_end(name: str) -> None:
    lrs = [float(i) for i in range(1, 7)]
    losses = smooth([10, 9, 9.5, 11, 13, 40], 0.98)
    bottom = min(range(6), key=losses.__getitem__)
    assert quietly(RULES[name], lrs, losses) <= lrs[bottom] < lrs[-1]


def tanh_fall_then_blow_up(lrs: list[float]) -> list[float]:
    """Flat at 2 until ~1e-4, falls along a tanh in log-LR (steepest at 1e-3), flat near 0, blows up past 0.1."""
    return [1 - math.tanh(math.log10(lr) + 3) + (100 * (lr - 0.1) ** 2 if lr > 0.1 else 0) for lr in lrs]


@pytest.mark.parametrize("name", list(RULES))
def test_every_rule_inside_the_fall_and_below_the_minimum(name: str) -> None:
    lrs = sweep_lrs(1e-6, 1.0, 121, "exponential")
    losses = tanh_fall_then_blow_up(lrs)
    # the minimum of the closed form: derivative of 1 - tanh(log10 lr + 3) + 100 (lr - 0.1)^2 is 0 just above 0.1
    bottom = min(range(len(lrs)), key=losses.__getitem__)
    assert 0.1 <= lrs[bottom] <= 0.12
    picked = RULES[name](lrs, losses)
    assert lrs[0] < picked <= lrs[bottom] / 10 * (1 + 1e-12)
    # inside the falling stretch: the loss there is below its starting level and above its minimum
    index = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / picked)))
    assert losses[bottom] < losses[index] < losses[0]


def test_steepest_finds_the_inflection_of_the_fall() -> None:
    lrs = sweep_lrs(1e-6, 1.0, 121, "exponential")
    # the tanh in log10-LR is steepest at log10 lr = -3, well below the ceiling (lr of the minimum / 10 ~ 1e-2)
    assert steepest(lrs, tanh_fall_then_blow_up(lrs)) == pytest.approx(1e-3, rel=0.06)


def test_valley_is_the_geometric_middle_of_the_useful_fall() -> None:
    lrs = sweep_lrs(1e-6, 1.0, 121, "exponential")
    losses = tanh_fall_then_blow_up(lrs)
    # by hand: the fall goes from ~2 to ~0; it starts 10 % down, where 1 - tanh(x + 3) = 1.8, x = log10 lr
    start = 10 ** (math.atanh(-0.8) - 3)
    bottom = min(range(len(lrs)), key=losses.__getitem__)
    expected = math.sqrt(start * lrs[bottom] / 10)
    assert valley(lrs, losses) == pytest.approx(expected, rel=0.1)


def test_min_div_10_never_leaves_the_sweep() -> None:
    # minimum at the third point: a tenth of its LR is below the sweep's start, the rule stops at the top of the fall
    lrs = sweep_lrs(1e-7, 1e-5, 21, "exponential")
    losses = [3.0, 2.0, 1.0, *[1.0 + 0.1 * i for i in range(1, 19)]]
    picked = quietly(min_div_10, lrs, losses)
    assert picked >= lrs[0]
    assert picked == pytest.approx(lrs[0])


def test_flat_curve_warns_and_suggests_nothing() -> None:
    lrs = sweep_lrs(1e-7, 10.0, 100, "exponential")
    losses = [1.0 + 0.001 * math.sin(i) for i in range(100)]
    with pytest.warns(RangeTestWarning, match=r"no clear fall.*`min_lr`.*`num_steps`"):
        assert suggest(lrs, losses) == {}
    for rule in RULES.values():
        with pytest.warns(RangeTestWarning, match="not reliable"):
            rule(lrs, losses)


def test_minimum_at_the_start_warns_to_lower_min_lr() -> None:
    lrs = sweep_lrs(1e-7, 10.0, 50, "exponential")
    losses = [1.0 + 0.1 * i for i in range(50)]
    with pytest.warns(RangeTestWarning, match=r"lowest at the start.*Lower `min_lr`"):
        assert suggest(lrs, losses) == {}


def test_a_fall_within_the_noise_is_not_clear() -> None:
    generator = torch.Generator().manual_seed(0)
    raw = (1.0 + 0.3 * torch.randn(100, generator=generator, dtype=torch.float64)).tolist()
    lrs = sweep_lrs(1e-7, 10.0, 100, "exponential")
    fall = falling_stretch(lrs, smooth(raw, 0.98), raw, 0.98)
    assert not fall.clear, "pure noise around a constant is no fall"
    falling = [r + 2.0 * (1 - i / 99) for i, r in enumerate(raw)]
    assert falling_stretch(lrs, smooth(falling, 0.98), falling, 0.98).clear


def test_smoothed_noise_matches_the_ema_weights() -> None:
    # smooth() is linear: its weight on loss k at point i is smooth(unit impulse at k)[i]
    beta, index = 0.9, 7
    weights = [smooth([1.0 if j == k else 0.0 for j in range(index + 1)], beta)[index] for k in range(index + 1)]
    assert sum(weights) == pytest.approx(1.0)
    assert smoothed_noise(2.0, beta, index) == pytest.approx(2.0 * math.sqrt(sum(w * w for w in weights)))
    assert smoothed_noise(2.0, beta, 0) == pytest.approx(2.0)


def test_noise_estimates_the_standard_deviation() -> None:
    generator = torch.Generator().manual_seed(1)
    samples = (0.5 * torch.randn(4000, generator=generator, dtype=torch.float64)).tolist()
    trend = [s + 1e-4 * i for i, s in enumerate(samples)]
    assert noise(trend) == pytest.approx(0.5, rel=0.05)


def test_steepest_needs_enough_points() -> None:
    with pytest.raises(ValueError, match="needs 18"):
        steepest([1.0] * 12, [1.0] * 12, 10, 5)


# ---- least squares: full-batch SGD diverges above 2/h -----------------------------------------------------------


def least_squares_sweep(
    seed: int, scale: float, condition: float, steps: int = 100, dims: int = 20
) -> tuple[float, list[float], list[float]]:
    """The range test's sweep on ``mean((X w - y)^2)`` with full-batch SGD from w = 0: 2/h, the LRs and raw losses."""
    generator = torch.Generator().manual_seed(seed)
    rows = 200
    x = scale * torch.randn(rows, dims, generator=generator, dtype=torch.float64)
    x = x * torch.logspace(0, -condition, dims, dtype=torch.float64)
    y = x @ torch.randn(dims, generator=generator, dtype=torch.float64)
    y = y + 0.1 * torch.randn(rows, generator=generator, dtype=torch.float64)
    h = torch.linalg.eigvalsh(2 * x.T @ x / rows).max().item()
    w = torch.zeros(dims, dtype=torch.float64)
    lrs, losses, average, best = [], [], 0.0, math.inf
    for step, lr in enumerate(sweep_lrs(1e-7, 10.0, steps, "exponential")):
        residual = x @ w - y
        loss = residual.pow(2).mean().item()
        if not math.isfinite(loss):
            break
        lrs.append(lr)
        losses.append(loss)
        w = w - lr * 2 * x.T @ residual / rows
        average = 0.98 * average + 0.02 * loss
        smoothed = average / (1 - 0.98 ** (step + 1))
        best = min(best, smoothed)
        if step > 0 and smoothed > 4 * best:
            break
    return 2 / h, lrs, losses


PROBLEMS = [(seed, scale, condition) for seed in range(4) for scale in (1.0, 10.0) for condition in (0.0, 1.0, 2.0)]


@pytest.mark.parametrize(("seed", "scale", "condition"), PROBLEMS)
def test_least_squares_every_suggestion_below_two_over_h(seed: int, scale: float, condition: float) -> None:
    edge, lrs, losses = least_squares_sweep(seed, scale, condition)
    assert lrs[-1] > edge, "the sweep reaches the unstable LRs, so the rules have something to stay below"
    suggestions = suggest(lrs, smooth(losses, 0.98), 10, 5, losses, 0.98)
    assert set(suggestions) == {"valley", "steepest", "min_div_10"}
    for name, lr in suggestions.items():
        assert lrs[0] <= lr < edge, f"{name}={lr:.3g} is {lr / edge:.2f} x 2/h"


@pytest.mark.parametrize("steps", [30, 300])
def test_least_squares_coarse_and_fine_sweeps_stay_below_two_over_h(steps: int) -> None:
    for seed in range(3):
        edge, lrs, losses = least_squares_sweep(seed, 1.0, 2.0, steps=steps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RangeTestWarning)
            suggestions = suggest(lrs, smooth(losses, 0.98), 2, 2, losses, 0.98)
        for name, lr in suggestions.items():
            assert lr < edge, f"{steps} steps, seed {seed}: {name}={lr:.3g} is {lr / edge:.2f} x 2/h"


def test_valley_follows_the_problem_not_the_sweep() -> None:
    # scaling X by 10 scales h by 100: the same sweep, a fall 100x further left; valley must move with it
    low_edge, lrs_a, losses_a = least_squares_sweep(0, 10.0, 0.0)
    high_edge, lrs_b, losses_b = least_squares_sweep(0, 1.0, 0.0)
    assert high_edge / low_edge == pytest.approx(100.0)
    valley_a = valley(lrs_a, smooth(losses_a, 0.98))
    valley_b = valley(lrs_b, smooth(losses_b, 0.98))
    assert valley_b / valley_a == pytest.approx(100.0, rel=0.5)
