"""The pure schedule math against the peers' own numbers: Hugging Face transformers and timm, to 1e-15.

``PEER_VECTORS`` (bottom of this file) are the LRs the peers' schedulers really produced (transformers 5.24.0, timm
1.0.31), recorded once; neither library is a dependency. Where one is installed, ``test_live_*`` re-runs it.
Each case names the peer's call and the pack's equivalent, as in ``docs/schedules_mapping.md``.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lightning_tuning.schedules.cosine import cosine_annealing_lr
from lightning_tuning.schedules.cosine_cycles import cosine_cycles_lr
from lightning_tuning.schedules.inverse_sqrt import inverse_sqrt_factor
from lightning_tuning.schedules.polynomial_end import polynomial_lr
from lightning_tuning.schedules.warmup_from import warmup_from_lr
from lightning_tuning.schedules.wsd import wsd_factor, wsd_stable_length

TOL = 1e-15


def after(t: int, start: int) -> int:
    """A schedule with a ``start`` offset counts units from ``start`` on (0 before)."""
    return max(0, t - start)


# Each case: (peer vector key, pack LR of group with base LR `base` at step t).
Pack = Callable[[int, float], float]


def _wsd(w: str, d: str) -> Pack:
    return lambda t, base: base * wsd_factor(t, 3, 4, 5, w, d, 0.1)  # type: ignore[arg-type]


CASES: dict[str, tuple[tuple[float, ...], Pack]] = {
    # get_wsd_schedule(opt, 3, 5, num_stable_steps=4, warmup_type=w, decay_type=d, min_lr_ratio=0.1)
    **{
        f"wsd_{w}_{d}": ((0.1, 0.03), _wsd(w, d))
        for w in ("linear", "cosine", "1-sqrt")
        for d in ("linear", "cosine", "1-sqrt")
    },
    # get_wsd_schedule(opt, 2, 4, num_training_steps=10): the stable phase fills the run
    "wsd_total": ((1.0,), lambda t, base: base * wsd_factor(t, 2, wsd_stable_length(10, 2, 4), 4)),
    # get_wsd_schedule(opt, 2, 6, num_stable_steps=1, decay_type="cosine", num_cycles=1.0, min_lr_ratio=0.2)
    "wsd_cycles": ((1.0,), lambda t, base: base * wsd_factor(t, 2, 1, 6, "linear", "cosine", 0.2, num_cycles=1.0)),
    # get_inverse_sqrt_schedule(opt, 4), (opt, 4, timescale=10), (opt, 0)
    "invsqrt_w4": ((0.1, 0.03), lambda t, base: base * inverse_sqrt_factor(t, 4)),
    "invsqrt_w4_ts10": ((0.1, 0.03), lambda t, base: base * inverse_sqrt_factor(t, 4, timescale=10)),
    "invsqrt_w0": ((1.0,), lambda t, base: base * inverse_sqrt_factor(t, 0)),
    # get_polynomial_decay_schedule_with_warmup(opt, 3, 12, lr_end=0.01, power=2.0):
    # Warmup(3, start_lr=0) then PolynomialDecay(total_iters=9, power=2, end_lr=0.01, start=3)
    "hf_poly": (
        (0.1,),
        lambda t, base: warmup_from_lr(t, 3, base, 0.0) * polynomial_lr(after(t, 3), 9, 2.0, base, 0.01) / base,
    ),
    # get_linear_schedule_with_warmup(opt, 3, 12): Warmup(3, start_lr=0) then PolynomialDecay(9, power=1, start=3)
    "hf_linear": (
        (0.1, 0.03),
        lambda t, base: warmup_from_lr(t, 3, base, 0.0) * polynomial_lr(after(t, 3), 9, 1.0, base, 0.0) / base,
    ),
    # CosineLRScheduler(t_initial=10, lr_min=1e-3, warmup_t=3, warmup_lr_init=5e-3, warmup_prefix=True):
    # Warmup(3, start_lr=5e-3) then CosineAnnealing(T_0=10, eta_min=1e-3, cycle_limit=1, start=3)
    "timm_cos_prefix": (
        (0.1, 0.03),
        lambda t, base: (
            warmup_from_lr(t, 3, base, 0.005)
            * cosine_cycles_lr(after(t, 3), base, 10, eta_min=0.001, cycle_limit=1)
            / base
        ),
    ),
    # CosineLRScheduler(t_initial=4, lr_min=0.01, cycle_mul=1.5, cycle_decay=0.5, cycle_limit=3)
    "timm_cos_cycles": (
        (1.0,),
        lambda t, base: cosine_cycles_lr(t, base, 4, 1.5, 0.01, cycle_limit=3, cycle_decay=0.5),
    ),
    # CosineLRScheduler(t_initial=10, k_decay=2.0)
    "timm_cos_k2": ((1.0,), lambda t, base: cosine_cycles_lr(t, base, 10, cycle_limit=1, k_decay=2.0)),
    # CosineLRScheduler(t_initial=6, lr_min=1e-3, cycle_mul=2, cycle_decay=0.8, cycle_limit=2, k_decay=0.5,
    # t_in_epochs=False) stepped per update
    "timm_cos_k05_cycles": (
        (0.1, 0.03),
        lambda t, base: cosine_cycles_lr(t, base, 6, 2.0, 0.001, cycle_limit=2, cycle_decay=0.8, k_decay=0.5),
    ),
    # PolyLRScheduler(t_initial=10, power=2, lr_min=0.01, k_decay=1.5, warmup_t=2, warmup_lr_init=0, prefix=True)
    "timm_poly": (
        (0.1,),
        lambda t, base: (
            warmup_from_lr(t, 2, base, 0.0) * polynomial_lr(after(t, 2), 10, 2.0, base, 0.01, k_decay=1.5) / base
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_peer_vector(case: str) -> None:
    bases, pack = CASES[case]
    expected = PEER_VECTORS[case]
    assert len(expected) == len(bases)
    for base, column in zip(bases, expected, strict=True):
        got = [pack(t, base) for t in range(len(column))]
        assert got == pytest.approx(column, rel=0, abs=TOL), case


def test_hf_cosine_with_warmup_until_its_end() -> None:
    """get_cosine_schedule_with_warmup(opt, 2, 10): Warmup(2, start_lr=0) then CosineAnnealing(T_max=8, start=2).

    Past ``num_training_steps`` Hugging Face's cosine climbs again (``0.03806`` at step 11); the pack's holds 0.
    """
    expected = PEER_VECTORS["hf_cosine"][0]
    got = [warmup_from_lr(t, 2, 1.0, 0.0) * cosine_annealing_lr(after(t, 2), 1.0, 8, 0.0) for t in range(12)]
    assert got[:11] == pytest.approx(expected[:11], rel=0, abs=TOL)
    assert expected[11] > 0.038
    assert got[11] == 0.0


def test_timm_without_prefix_is_not_a_product() -> None:
    """timm's ``warmup_prefix=False`` replaces the cosine during the warmup (the peak is never reached).

    The pack multiplies schedules, so ``Warmup x CosineAnnealing`` differs there (documented in the mapping); after the
    warmup both follow the same cosine.
    """
    expected = PEER_VECTORS["timm_cos_noprefix"][0]
    product = [
        warmup_from_lr(t, 3, 0.1, 0.005) * cosine_cycles_lr(t, 0.1, 10, eta_min=0.001, cycle_limit=1) / 0.1
        for t in range(len(expected))
    ]
    assert product[3:] == pytest.approx(expected[3:], rel=0, abs=TOL)
    assert max(expected) < 0.1  # timm never reaches the peak
    assert product[1] != pytest.approx(expected[1], abs=1e-6)


def _load_timm_scheduler() -> types.ModuleType:
    """timm's scheduler package without ``timm/__init__`` (which needs torchvision)."""
    spec_root = pytest.importorskip("importlib.util").find_spec("timm")
    if spec_root is None or spec_root.submodule_search_locations is None:
        pytest.skip("timm is not installed")
    root = Path(next(iter(spec_root.submodule_search_locations)))
    for name, path in (("timm", root), ("timm.scheduler", root / "scheduler")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module
    import importlib

    return importlib.import_module("timm.scheduler.cosine_lr")


def _run_per_step(optimizer: torch.optim.Optimizer, step: Callable[[int], None], steps: int) -> list[float]:
    lrs = []
    for t in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        step(t)
    return lrs


def _sgd(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_live_transformers_wsd_and_inverse_sqrt() -> None:
    optimization = pytest.importorskip("transformers.optimization")
    for w in ("linear", "cosine", "1-sqrt"):
        for d in ("linear", "cosine", "1-sqrt"):
            optimizer = _sgd(0.1)
            scheduler = optimization.get_wsd_schedule(
                optimizer, 5, 7, num_stable_steps=6, warmup_type=w, decay_type=d, min_lr_ratio=0.05
            )
            got = _run_per_step(optimizer, lambda t, s=scheduler: s.step(), 22)
            assert got == pytest.approx([0.1 * wsd_factor(t, 5, 6, 7, w, d, 0.05) for t in range(22)], abs=TOL)
    optimizer = _sgd(0.1)
    scheduler = optimization.get_inverse_sqrt_schedule(optimizer, 7, timescale=3)
    got = _run_per_step(optimizer, lambda t: scheduler.step(), 30)
    assert got == pytest.approx([0.1 * inverse_sqrt_factor(t, 7, 3) for t in range(30)], abs=TOL)


def test_live_timm_cosine_cycles() -> None:
    cosine_lr = _load_timm_scheduler()
    optimizer = _sgd(0.1)
    scheduler = cosine_lr.CosineLRScheduler(
        optimizer, t_initial=7, lr_min=0.002, cycle_mul=1.7, cycle_decay=0.6, cycle_limit=3, k_decay=1.3
    )
    got = _run_per_step(optimizer, lambda t: scheduler.step(t + 1), 40)
    expected = [cosine_cycles_lr(t, 0.1, 7, 1.7, 0.002, cycle_limit=3, cycle_decay=0.6, k_decay=1.3) for t in range(40)]
    assert got == pytest.approx(expected, abs=TOL)


def test_cycle_boundary_where_timm_rounds_down() -> None:
    """t_0=2, T_mult=3: the sixth cycle starts at t=242. timm's float log puts t=242 at the end of the fifth cycle
    (``log(485, 3) = 4.999999999999999``), at ``lr_min``; the pack, like torch's step-by-step CAWR, restarts."""
    assert math.floor(math.log(1 - 242 / 2 * (1 - 3.0), 3.0)) == 4
    assert cosine_cycles_lr(242, 1.0, 2, 3.0, 0.0) == 1.0
    assert cosine_cycles_lr(242, 1.0, 2, 3.0, 0.0, cycle_decay=0.5) == 0.5**5
    assert cosine_cycles_lr(241, 1.0, 2, 3.0, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 161 / 162)), abs=TOL)


PEER_VECTORS: dict[str, list[list[float]]] = {
    "wsd_linear_linear": [
        [
            0.010000000000000002,
            0.04000000000000001,
            0.06999999999999999,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.08200000000000002,
            0.064,
            0.04600000000000001,
            0.027999999999999997,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.012,
            0.020999999999999998,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.0246,
            0.0192,
            0.013800000000000002,
            0.0084,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_linear_cosine": [
        [
            0.010000000000000002,
            0.04000000000000001,
            0.06999999999999999,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.09140576474687263,
            0.06890576474687264,
            0.04109423525312738,
            0.018594235253127374,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.012,
            0.020999999999999998,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.027421729424061788,
            0.02067172942406179,
            0.012328270575938213,
            0.005578270575938212,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_linear_1-sqrt": [
        [
            0.010000000000000002,
            0.04000000000000001,
            0.06999999999999999,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.05975077640500379,
            0.04307900211696917,
            0.030286299768266495,
            0.019501552810007573,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.012,
            0.020999999999999998,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.017925232921501135,
            0.012923700635090749,
            0.009085889930479948,
            0.005850465843002271,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_cosine_linear": [
        [
            0.010000000000000002,
            0.032499999999999994,
            0.0775,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.08200000000000002,
            0.064,
            0.04600000000000001,
            0.027999999999999997,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.009749999999999998,
            0.023249999999999996,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.0246,
            0.0192,
            0.013800000000000002,
            0.0084,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_cosine_cosine": [
        [
            0.010000000000000002,
            0.032499999999999994,
            0.0775,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.09140576474687263,
            0.06890576474687264,
            0.04109423525312738,
            0.018594235253127374,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.009749999999999998,
            0.023249999999999996,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.027421729424061788,
            0.02067172942406179,
            0.012328270575938213,
            0.005578270575938212,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_cosine_1-sqrt": [
        [
            0.010000000000000002,
            0.032499999999999994,
            0.0775,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.05975077640500379,
            0.04307900211696917,
            0.030286299768266495,
            0.019501552810007573,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.009749999999999998,
            0.023249999999999996,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.017925232921501135,
            0.012923700635090749,
            0.009085889930479948,
            0.005850465843002271,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_1-sqrt_linear": [
        [
            0.010000000000000002,
            0.026515307716504656,
            0.04803847577293368,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.08200000000000002,
            0.064,
            0.04600000000000001,
            0.027999999999999997,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.007954592314951396,
            0.014411542731880103,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.0246,
            0.0192,
            0.013800000000000002,
            0.0084,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_1-sqrt_cosine": [
        [
            0.010000000000000002,
            0.026515307716504656,
            0.04803847577293368,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.09140576474687263,
            0.06890576474687264,
            0.04109423525312738,
            0.018594235253127374,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.007954592314951396,
            0.014411542731880103,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.027421729424061788,
            0.02067172942406179,
            0.012328270575938213,
            0.005578270575938212,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_1-sqrt_1-sqrt": [
        [
            0.010000000000000002,
            0.026515307716504656,
            0.04803847577293368,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.05975077640500379,
            0.04307900211696917,
            0.030286299768266495,
            0.019501552810007573,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
        ],
        [
            0.003,
            0.007954592314951396,
            0.014411542731880103,
            0.03,
            0.03,
            0.03,
            0.03,
            0.03,
            0.017925232921501135,
            0.012923700635090749,
            0.009085889930479948,
            0.005850465843002271,
            0.003,
            0.003,
            0.003,
            0.003,
        ],
    ],
    "wsd_total": [
        [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 0.0, 0.0, 0.0],
    ],
    "wsd_cycles": [
        [0.2, 0.6000000000000001, 1.0, 1.0, 0.8, 0.40000000000000013, 0.2, 0.39999999999999986, 0.8, 0.2, 0.2, 0.2],
    ],
    "invsqrt_w4": [
        [
            0.0,
            0.025,
            0.05,
            0.07500000000000001,
            0.1,
            0.08944271909999159,
            0.08164965809277262,
            0.07559289460184544,
            0.07071067811865475,
            0.06666666666666667,
            0.0632455532033676,
            0.06030226891555273,
        ],
        [
            0.0,
            0.0075,
            0.015,
            0.0225,
            0.03,
            0.026832815729997475,
            0.024494897427831782,
            0.02267786838055363,
            0.021213203435596423,
            0.019999999999999997,
            0.018973665961010275,
            0.018090680674665818,
        ],
    ],
    "invsqrt_w4_ts10": [
        [
            0.0,
            0.025,
            0.05,
            0.07500000000000001,
            0.1,
            0.09534625892455922,
            0.09128709291752769,
            0.08770580193070293,
            0.08451542547285167,
            0.08164965809277262,
            0.07905694150420949,
            0.07669649888473705,
        ],
        [
            0.0,
            0.0075,
            0.015,
            0.0225,
            0.03,
            0.028603877677367766,
            0.027386127875258306,
            0.026311740579210874,
            0.025354627641855497,
            0.024494897427831782,
            0.023717082451262844,
            0.02300894966542111,
        ],
    ],
    "invsqrt_w0": [
        [1.0, 0.9999500037496877, 0.9999000149975006, 0.9998500337415648, 0.9998000599800071],
    ],
    "hf_poly": [
        [
            0.0,
            0.03333333333333333,
            0.06666666666666667,
            0.1,
            0.0811111111111111,
            0.06444444444444446,
            0.05000000000000002,
            0.037777777777777785,
            0.027777777777777776,
            0.020000000000000004,
            0.014444444444444444,
            0.011111111111111113,
            0.01,
            0.01,
            0.01,
        ],
    ],
    "hf_linear": [
        [
            0.0,
            0.03333333333333333,
            0.06666666666666667,
            0.1,
            0.08888888888888889,
            0.07777777777777778,
            0.06666666666666667,
            0.05555555555555556,
            0.044444444444444446,
            0.03333333333333333,
            0.022222222222222223,
            0.011111111111111112,
            0.0,
            0.0,
        ],
        [
            0.0,
            0.009999999999999998,
            0.019999999999999997,
            0.03,
            0.026666666666666665,
            0.023333333333333334,
            0.019999999999999997,
            0.016666666666666666,
            0.013333333333333332,
            0.009999999999999998,
            0.006666666666666666,
            0.003333333333333333,
            0.0,
            0.0,
        ],
    ],
    "hf_cosine": [
        [
            0.0,
            0.5,
            1.0,
            0.9619397662556434,
            0.8535533905932737,
            0.6913417161825449,
            0.5,
            0.30865828381745514,
            0.14644660940672627,
            0.03806023374435663,
            0.0,
            0.038060233744356575,
        ],
    ],
    "timm_cos_prefix": [
        [
            0.005,
            0.03666666666666667,
            0.06833333333333334,
            0.1,
            0.09757729755661011,
            0.0905463412215599,
            0.07959536998847742,
            0.0657963412215599,
            0.0505,
            0.03520365877844011,
            0.021404630011522586,
            0.010453658778440109,
            0.0034227024433899004,
            0.001,
            0.001,
            0.001,
        ],
        [
            0.005,
            0.013333333333333332,
            0.021666666666666667,
            0.03,
            0.029290319486279727,
            0.027230746418436737,
            0.024022886158240858,
            0.019980746418436737,
            0.0155,
            0.011019253581563263,
            0.006977113841759141,
            0.0037692535815632634,
            0.0017096805137202737,
            0.001,
            0.001,
            0.001,
        ],
    ],
    "timm_cos_noprefix": [
        [
            0.005,
            0.03666666666666667,
            0.06833333333333334,
            0.07959536998847742,
            0.0657963412215599,
            0.0505,
            0.03520365877844011,
            0.021404630011522586,
            0.010453658778440109,
            0.0034227024433899004,
            0.001,
            0.001,
            0.001,
        ],
        [
            0.005,
            0.013333333333333332,
            0.021666666666666667,
            0.024022886158240858,
            0.019980746418436737,
            0.0155,
            0.011019253581563263,
            0.006977113841759141,
            0.0037692535815632634,
            0.0017096805137202737,
            0.001,
            0.001,
            0.001,
        ],
    ],
    "timm_cos_cycles": [
        [
            1.0,
            0.855017856687341,
            0.505,
            0.15498214331265903,
            0.5,
            0.4671762239271875,
            0.3775,
            0.255,
            0.13250000000000006,
            0.04282377607281252,
            0.25,
            0.242763114494309,
            0.22192533317427734,
            0.19,
            0.15083778132003167,
            0.10916221867996835,
            0.07000000000000002,
            0.03807466682572265,
            0.017236885505691003,
            0.01,
            0.01,
            0.01,
            0.01,
            0.01,
        ],
    ],
    "timm_cos_k2": [
        [
            1.0,
            0.9997532801828658,
            0.996057350657239,
            0.9801468428384715,
            0.9381533400219317,
            0.8535533905932737,
            0.7128896457825363,
            0.5157053795390641,
            0.28711035421746367,
            0.08645971286271914,
            0.0,
            0.0,
        ],
    ],
    "timm_cos_k05_cycles": [
        [
            0.1,
            0.0645714393729927,
            0.03858938353128926,
            0.020517856579598738,
            0.009000218425366024,
            0.0028428407108200297,
            0.08000000000000002,
            0.06483952508494253,
            0.0517287243481457,
            0.04050000000000001,
            0.03099556867648336,
            0.023067013900385614,
            0.016574855250386874,
            0.011388133710001979,
            0.007384012682867839,
            0.004447394174963966,
            0.0024705496581291196,
            0.0013527651426739863,
            0.001,
            0.001,
            0.001,
            0.001,
        ],
        [
            0.03,
            0.019621936786028162,
            0.012011031539468569,
            0.006717351927357206,
            0.003343498326622371,
            0.001539822026401827,
            0.024,
            0.019586190847514912,
            0.01576912227857406,
            0.0125,
            0.0097328870830268,
            0.007424573667200874,
            0.0055344515285936455,
            0.00402439335860817,
            0.0028586366038729147,
            0.002003671721824952,
            0.0014281347105945536,
            0.0011027037757152113,
            0.001,
            0.001,
            0.001,
            0.001,
        ],
    ],
    "timm_poly": [
        [
            0.0,
            0.05,
            0.1,
            0.09439790021169693,
            0.08462031056200152,
            0.07285298189472103,
            0.06022320169357534,
            0.047610389693210735,
            0.0357835597219198,
            0.02545083665670648,
            0.017282484496012107,
            0.011923305715816764,
            0.01,
            0.01,
            0.01,
        ],
    ],
}
