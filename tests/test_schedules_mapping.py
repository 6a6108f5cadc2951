"""One test per row of ``docs/schedules_mapping.md``: the peer's schedule and the pack's arguments give the same LRs.

At the math level: the pack side composes its pure functions exactly as the callbacks do (the product of each
schedule's factor of the base LR; a ``start`` offset shifts a schedule's clock), the peer side is torch's scheduler
run here, or the peer's formula as its docs and source state it, written out in this file. Sweeps over several
lengths catch off-by-one mappings that a single vector could miss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_sched

from lightning_tuning.schedules.batch_scaling import batch_scale_factor, global_batch_size, resolve_rule
from lightning_tuning.schedules.cosine import cosine_annealing_lr, cosine_warm_restarts_lr
from lightning_tuning.schedules.cosine_cycles import cosine_cycles_lr
from lightning_tuning.schedules.decay import polynomial_factor
from lightning_tuning.schedules.durations import RunLength, resolve_duration
from lightning_tuning.schedules.inverse_sqrt import inverse_sqrt_factor
from lightning_tuning.schedules.layerwise import parameter_scales
from lightning_tuning.schedules.polynomial_end import polynomial_lr
from lightning_tuning.schedules.warmup import warmup_end, warmup_factor
from lightning_tuning.schedules.warmup_from import start_factor_for_linear_lr, warmup_from_lr
from lightning_tuning.schedules.wsd import wsd_factor, wsd_stable_length

BASES = (0.1, 0.03)
LENGTHS = [1, 2, 3, 5, 8]


def torch_lrs(make: Callable[[torch.optim.Optimizer], Any], steps: int) -> list[list[float]]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASES]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASES, strict=True)], lr=0.1)
    scheduler = make(optimizer)
    out = []
    for _ in range(steps):
        out.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return out


def after(t: int, start: int) -> int:
    return max(0, t - start)


def column(rows: list[list[float]], group: int) -> list[float]:
    return [row[group] for row in rows]


# ---- torch ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("s", [1e-3, 0.1, 0.5])
def test_t1_linear_lr_is_warmup_with_start_lr(s: float, n: int) -> None:
    """LinearLR(start_factor=s, total_iters=N) -> Warmup(N, start_lr=[s * lr of each group])."""
    expected = torch_lrs(lambda o: torch_sched.LinearLR(o, start_factor=s, total_iters=n), n + 4)
    for g, base in enumerate(BASES):
        got = [warmup_from_lr(t, n, base, s * base) for t in range(n + 4)]
        assert got == pytest.approx(column(expected, g), rel=1e-12)


@pytest.mark.parametrize("n", LENGTHS)
def test_t2_linear_lr_is_warmup_n_plus_1_with_start_factor(n: int) -> None:
    """LinearLR(s, N) with s >= 1/(N+1) -> Warmup(N + 1, start_factor=(s (N+1) - 1) / N): the off-by-one mapping."""
    s = 0.5
    expected = torch_lrs(lambda o: torch_sched.LinearLR(o, start_factor=s, total_iters=n), n + 4)
    relative = start_factor_for_linear_lr(s, n)
    assert 0 <= relative < 1
    assert warmup_end(n + 1, "linear") == n  # the pack's linear warmup reaches 1 at step L - 1
    for g, base in enumerate(BASES):
        got = [base * warmup_factor(t, n + 1, "linear", relative) for t in range(n + 4)]
        assert got == pytest.approx(column(expected, g), rel=1e-12)
    assert start_factor_for_linear_lr(1 / (n + 2), n) < 0  # below 1/(N+1): only start_lr expresses it


@pytest.mark.parametrize(("n", "t_max"), [(1, 4), (3, 5), (5, 25)])
def test_t3_sequential_lr_hands_over_at_the_milestone(n: int, t_max: int) -> None:
    """SequentialLR([LinearLR(s, N), CosineAnnealingLR(T)], [N]) -> Warmup(N, start_lr) + CosineAnnealing(T_max=T,
    start='after_warmup'); the cosine starts from its own base at the milestone, as SequentialLR hands over."""

    def make(o: torch.optim.Optimizer) -> Any:
        parts = [torch_sched.LinearLR(o, start_factor=0.1, total_iters=n), torch_sched.CosineAnnealingLR(o, t_max)]
        return torch_sched.SequentialLR(o, parts, milestones=[n])

    steps = n + t_max + 1
    expected = torch_lrs(make, steps)
    for g, base in enumerate(BASES):
        got = [
            warmup_from_lr(t, n, base, 0.1 * base) * cosine_annealing_lr(after(t, n), base, t_max, 0.0) / base
            for t in range(steps)
        ]
        assert got == pytest.approx(column(expected, g), rel=1e-10, abs=1e-15)


def test_t4_cosine_warm_restarts() -> None:
    """CosineAnnealingWarmRestarts(T_0, T_mult) -> CosineAnnealing(T_0=..., T_mult=...), old and new math alike."""
    expected = torch_lrs(lambda o: torch_sched.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3, eta_min=0.001), 40)
    for g, base in enumerate(BASES):
        assert [cosine_warm_restarts_lr(t, base, 2, 3, 0.001) for t in range(40)] == pytest.approx(
            column(expected, g), rel=1e-10
        )
        assert [cosine_cycles_lr(t, base, 2, 3, 0.001) for t in range(40)] == pytest.approx(
            column(expected, g), rel=1e-10
        )


def test_t5_polynomial_lr() -> None:
    """PolynomialLR(total_iters=T, power=p) -> PolynomialDecay(total_iters=T, power=p) (end_lr 0)."""
    expected = torch_lrs(lambda o: torch_sched.PolynomialLR(o, total_iters=7, power=1.5), 10)
    for g, base in enumerate(BASES):
        assert [base * polynomial_factor(t, 7, 1.5) for t in range(10)] == pytest.approx(column(expected, g), rel=1e-12)
        assert [polynomial_lr(t, 7, 1.5, base, 0.0) for t in range(10)] == pytest.approx(column(expected, g), rel=1e-12)


# ---- Hugging Face (formulas of transformers/optimization.py) ---------------------------------------------------


def hf_warmup(t: int, w: int) -> float:
    return t / max(1, w)


@pytest.mark.parametrize("w", LENGTHS)
def test_h1_constant_schedule_with_warmup(w: int) -> None:
    """get_constant_schedule_with_warmup(W) -> Warmup(W, start_lr=0)."""
    for t in range(w + 3):
        expected = hf_warmup(t, w) if t < w else 1.0
        assert warmup_from_lr(t, w, 1.0, 0.0) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("w", LENGTHS)
def test_h2_linear_schedule_with_warmup(w: int) -> None:
    """get_linear_schedule_with_warmup(W, N) -> Warmup(W, start_lr=0) + PolynomialDecay(total_iters=N - W, power=1,
    start='after_warmup')."""
    n = w + 9
    for t in range(n + 3):
        expected = hf_warmup(t, w) if t < w else max(0.0, (n - t) / max(1, n - w))
        got = warmup_from_lr(t, w, 1.0, 0.0) * polynomial_factor(after(t, w), n - w, 1.0)
        assert got == pytest.approx(expected, abs=1e-15), t


@pytest.mark.parametrize("w", LENGTHS)
@pytest.mark.parametrize("rate", [0.0, 0.1])
def test_h3_h4_cosine_schedule_with_warmup_and_min_lr_rate(w: int, rate: float) -> None:
    """get_cosine_schedule_with_warmup(W, N) -> Warmup(W, start_lr=0) + CosineAnnealing(T_max=N - W,
    start='after_warmup'); get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate=r): eta_min=[r * lr]."""
    n = w + 10
    for base in BASES:
        for t in range(n + 1):  # past N Hugging Face's cosine climbs again; the pack's holds eta_min
            if t < w:
                expected = hf_warmup(t, w)
            else:
                progress = (t - w) / max(1, n - w)
                expected = max(0.0, 0.5 * (1 + math.cos(math.pi * 0.5 * 2 * progress)) * (1 - rate) + rate)
            got = warmup_from_lr(t, w, base, 0.0) * cosine_annealing_lr(after(t, w), base, n - w, rate * base) / base
            assert got == pytest.approx(base * expected, rel=1e-12, abs=1e-17), (t, base)


@pytest.mark.parametrize("w", LENGTHS)
def test_h5_polynomial_decay_schedule_with_warmup(w: int) -> None:
    """get_polynomial_decay_schedule_with_warmup(W, N, lr_end, power) -> Warmup(W, start_lr=0) +
    PolynomialDecay(total_iters=N - W, power, end_lr=lr_end, start='after_warmup'); one-LR optimizer."""
    n, lr_init, lr_end, power = w + 8, 0.1, 1e-4, 3.0
    for t in range(n + 3):
        if t < w:
            expected = lr_init * hf_warmup(t, w)
        elif t > n:
            expected = lr_end
        else:
            expected = (lr_init - lr_end) * (1 - (t - w) / (n - w)) ** power + lr_end
        got = warmup_from_lr(t, w, lr_init, 0.0) * polynomial_lr(after(t, w), n - w, power, lr_init, lr_end) / lr_init
        assert got == pytest.approx(expected, rel=1e-12), t


@pytest.mark.parametrize(("w", "d", "n"), [(0, 3, 10), (2, 4, 10), (3, 5, 8), (1, 1, 2)])
@pytest.mark.parametrize("shapes", [("linear", "cosine"), ("cosine", "1-sqrt"), ("1-sqrt", "linear")])
def test_h6_wsd_schedule(w: int, d: int, n: int, shapes: tuple[str, str]) -> None:
    """get_wsd_schedule(W, D, num_training_steps=N, warmup_type, decay_type, min_lr_ratio=m) ->
    WarmupStableDecay(W, decay=D, warmup_shape, decay_shape, min_lr_ratio=m): the stable phase fills the run."""
    m, stable = 0.05, wsd_stable_length(n, w, d)
    up = {
        "linear": lambda p: p,
        "cosine": lambda p: 0.5 * (1 - math.cos(math.pi * p)),
        "1-sqrt": lambda p: 1 - math.sqrt(1 - p),
    }
    down = {
        "linear": lambda p: 1 - p,
        "cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)),
        "1-sqrt": lambda p: 1 - math.sqrt(p),
    }
    for t in range(n + 2):
        if t < w:
            expected = max(0.0, up[shapes[0]](t / max(1, w)) * (1 - m) + m)
        elif t < w + stable:
            expected = 1.0
        elif t < n:
            expected = max(0.0, down[shapes[1]]((t - w - stable) / max(1, d)) * (1 - m) + m)
        else:
            expected = m
        assert wsd_factor(t, w, stable, d, shapes[0], shapes[1], m) == pytest.approx(expected, abs=1e-15), t  # type: ignore[arg-type]


@pytest.mark.parametrize(("w", "tau"), [(4, None), (4, 10), (0, None), (0, 3), (7, 2)])
def test_h7_inverse_sqrt_schedule(w: int, tau: int | None) -> None:
    """get_inverse_sqrt_schedule(W, timescale) -> InverseSqrt(warmup=W, timescale=...)."""
    timescale = tau if tau is not None else (w or 10_000)
    for t in range(40):
        expected = hf_warmup(t, w) if t < w else 1.0 / math.sqrt((t + timescale - w) / timescale)
        assert inverse_sqrt_factor(t, w, tau) == pytest.approx(expected, rel=1e-15), t


@pytest.mark.parametrize(("n", "agree"), [(100, True), (108, True), (37, True), (105, False), (101, False)])
def test_h8_warmup_ratio_rounds_up_in_hugging_face(n: int, agree: bool) -> None:
    """TrainingArguments(warmup_ratio=0.1): num_warmup_steps = ceil(0.1 N); the pack's "10%" rounds to nearest, so
    they agree when 0.1 N is whole or its fraction is above one half; write the warmup in steps otherwise."""
    pack = resolve_duration("10%", "step", RunLength(total_steps=n, steps_per_epoch=None), "Warmup.length")
    assert (pack == math.ceil(0.1 * n)) is agree


# ---- timm (formulas of timm/scheduler/cosine_lr.py, poly_lr.py, train.py) ----------------------------------------


def timm_cosine(t: int, base: float, t_initial: int, lr_min: float, warmup_t: int, warmup_lr_init: float,
                prefix: bool, cycle_mul: float = 1.0, cycle_decay: float = 1.0, cycle_limit: int = 1,
                k: float = 1.0) -> float:  # fmt: skip
    if t < warmup_t:
        return warmup_lr_init + t * (base - warmup_lr_init) / warmup_t
    if prefix:
        t -= warmup_t
    if cycle_mul != 1:
        i = math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    else:
        i, t_i = t // t_initial, t_initial
        t_curr = t - t_initial * i
    if i >= cycle_limit:
        return lr_min
    peak = base * cycle_decay**i
    return lr_min + 0.5 * (peak - lr_min) * (1 + math.cos(math.pi * t_curr**k / t_i**k))


@pytest.mark.parametrize("w", [1, 3, 5])
@pytest.mark.parametrize(
    "cycles", [(1.0, 1.0, 1, 1.0), (1.5, 0.5, 3, 1.0), (2.0, 0.8, 2, 0.5), (1.0, 0.7, 4, 2.0)], ids=str
)
def test_m1_cosine_with_prefixed_warmup(w: int, cycles: tuple[float, float, int, float]) -> None:
    """CosineLRScheduler(t_initial=T, lr_min, warmup_t=W, warmup_lr_init=x, warmup_prefix=True, cycle_mul,
    cycle_decay, cycle_limit, k_decay) -> Warmup(W, start_lr=x) + CosineAnnealing(T_0=T, T_mult=cycle_mul,
    eta_min=lr_min, cycle_limit, cycle_decay, k_decay, start='after_warmup')."""
    mul, decay, limit, k = cycles
    t_initial, lr_min, x = 6, 0.002, 0.005
    for base in BASES:
        for t in range(w + 50):
            expected = timm_cosine(t, base, t_initial, lr_min, w, x, True, mul, decay, limit, k)
            cos = cosine_cycles_lr(after(t, w), base, t_initial, mul, lr_min, limit, decay, k)
            got = warmup_from_lr(t, w, base, x) * cos / base
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-17), (t, base)


def test_m2_cosine_without_prefix_differs_only_during_the_warmup() -> None:
    """warmup_prefix=False replaces the cosine during the warmup: not a product. After the warmup the pack's
    Warmup(W, start_lr=x) + CosineAnnealing(T_max=T) (start 0) is timm's; during it, the pack's LR is lower by the
    cosine's factor, at most 1 - (1 + cos(pi (W - 1) / T)) / 2 (4.4e-4 for W = 5, T = 300)."""
    w, t_initial, x, base = 5, 300, 1e-5, 0.1
    worst = 0.0
    for t in range(t_initial + 3):
        expected = timm_cosine(t, base, t_initial, 0.0, w, x, False)
        got = warmup_from_lr(t, w, base, x) * cosine_annealing_lr(t, base, t_initial, 0.0) / base
        if t >= w:
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-18)
        else:
            worst = max(worst, (expected - got) / expected)
    assert 0 < worst <= 1 - (1 + math.cos(math.pi * (w - 1) / t_initial)) / 2 + 1e-15


@pytest.mark.parametrize("k", [1.0, 1.5])
def test_m3_poly_with_prefixed_warmup(k: float) -> None:
    """PolyLRScheduler(t_initial=T, power, lr_min, k_decay, warmup_t=W, warmup_lr_init=x, warmup_prefix=True) ->
    Warmup(W, start_lr=x) + PolynomialDecay(total_iters=T, power, end_lr=lr_min, k_decay, start='after_warmup')."""
    w, t_initial, power, lr_min, x, base = 3, 10, 2.0, 0.01, 0.0, 0.1
    for t in range(w + t_initial + 3):
        if t < w:
            expected = x + t * (base - x) / w
        elif t - w >= t_initial:
            expected = lr_min
        else:
            expected = lr_min + (base - lr_min) * (1 - (t - w) ** k / t_initial**k) ** power
        got = warmup_from_lr(t, w, base, x) * polynomial_lr(after(t, w), t_initial, power, base, lr_min, k) / base
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-18), t


def test_m4_t_in_epochs_is_the_interval() -> None:
    """t_in_epochs=True (step(epoch) after each epoch) -> interval='epoch': every step of epoch e runs at lr(e);
    t_in_epochs=False (step_update(num_updates)) -> interval='step', with lengths in updates."""
    steps_per_epoch, w, t_initial = 4, 2, 6
    per_step = [
        warmup_from_lr(s // steps_per_epoch, w, 0.1, 1e-4)
        * cosine_annealing_lr(after(s // steps_per_epoch, w), 0.1, t_initial, 0.0)
        / 0.1
        for s in range(steps_per_epoch * (w + t_initial))
    ]
    per_epoch = [timm_cosine(e, 0.1, t_initial, 0.0, w, 1e-4, True) for e in range(w + t_initial)]
    assert per_step == pytest.approx([per_epoch[s // steps_per_epoch] for s in range(len(per_step))], rel=1e-12)


@pytest.mark.parametrize(
    ("opt", "batch", "devices", "accumulate", "expected_rule"),
    [
        ("sgd", 128, 2, 1, "linear"),
        ("adamw", 64, 1, 8, "sqrt"),
        ("lamb", 32, 4, 1, "sqrt"),
        ("rmsprop", 256, 1, 1, "linear"),
    ],
)
def test_m5_lr_base_scaling(opt: str, batch: int, devices: int, accumulate: int, expected_rule: str) -> None:
    """train.py --lr-base 0.1 --lr-base-size 256 --lr-base-scale '' (auto) -> optimizer lr 0.1 +
    ScaleLR(reference_batch_size=256, rule='auto'): lr = lr_base * (B / 256) or * sqrt(B / 256)."""
    global_batch = global_batch_size(batch, devices, 1, accumulate)
    ratio = batch * devices * accumulate / 256
    timm_lr = 0.1 * (ratio if expected_rule == "linear" else ratio**0.5)  # timm: sqrt if 'ada' or 'lamb' in opt
    rule = resolve_rule("auto", opt)
    assert rule == expected_rule
    assert 0.1 * batch_scale_factor(global_batch, 256, rule) == pytest.approx(timm_lr, rel=1e-15)


def test_m6_layer_decay() -> None:
    """timm/BEiT layer decay on a ViT (layer id 0: patch_embed, cls_token, pos_embed; i + 1: blocks.i; L + 1: the
    rest, scale decay ** (L + 1 - id)) -> LayerwiseLR(blocks=[[patch_embed, cls_token, pos_embed], 'blocks.*'])."""
    depth, decay = 4, 0.75
    names = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    names += [f"blocks.{i}.{part}" for i in range(depth) for part in ("attn.qkv.weight", "norm1.weight")]
    names += ["norm.weight", "head.weight", "head.bias"]
    modules = ["", "patch_embed", "patch_embed.proj", "blocks", *(f"blocks.{i}" for i in range(depth)), "norm", "head"]
    modules += [f"blocks.{i}.attn" for i in range(depth)]
    scales = parameter_scales(
        names, modules, blocks=[["patch_embed", "cls_token", "pos_embed"], "blocks.*"], layer_decay=decay
    )

    def beit_layer_id(name: str) -> int:
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return depth + 1

    for name in names:
        assert scales[name][0] == pytest.approx(decay ** (depth + 1 - beit_layer_id(name)), rel=1e-15), name


# ---- pytorch_warmup --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", LENGTHS)
def test_p1_pytorch_warmup_linear(tau: int) -> None:
    """pytorch_warmup.LinearWarmup(warmup_period=tau): omega = min(1, (t + 1) / tau) -> Warmup(tau) (the pack's
    relative warmup uses that clock)."""
    for t in range(tau + 3):
        assert warmup_factor(t, tau, "linear", 0.0) == pytest.approx(min(1.0, (t + 1) / tau), abs=1e-15)
