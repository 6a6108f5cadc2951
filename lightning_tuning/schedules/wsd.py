"""Warmup-stable-decay (WSD): Hugging Face's ``get_wsd_schedule`` as a pure function of the step.

WSD (also "trapezoidal"; Zhai et al. 2022, Hu et al. 2024 "MiniCPM", Hägele et al. 2024) warms up, holds the peak
LR for most of the run, and decays only at the end, so a run can be extended or branched from any stable-phase
checkpoint. The factor returned here is the multiplier of a param group's base LR.
"""

from __future__ import annotations

import math
from typing import Literal

WSDShape = Literal["linear", "cosine", "1-sqrt"]
WSD_SHAPES: tuple[str, ...] = ("linear", "cosine", "1-sqrt")


def _warmup_shape(progress: float, shape: WSDShape) -> float:
    if shape == "linear":
        return progress
    if shape == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    return 1.0 - math.sqrt(1.0 - progress)


def _decay_shape(progress: float, shape: WSDShape, num_cycles: float) -> float:
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress))
    return 1.0 - math.sqrt(progress)


def wsd_factor(
    t: int,
    warmup: int,
    stable: int,
    decay: int,
    warmup_shape: WSDShape = "linear",
    decay_shape: WSDShape = "cosine",
    min_lr_ratio: float = 0.0,
    num_cycles: float = 0.5,
) -> float:
    """The WSD multiplier of the base LR for the step with index ``t`` (0-based), exactly Hugging Face's lambda.

    With ``m = min_lr_ratio`` and ``W, S, D`` the phase lengths:

    * warmup, ``t < W``: ``max(0, f(t / W) * (1 - m) + m)`` with ``f`` = ``p``, ``(1 - cos(pi p)) / 2`` or
      ``1 - sqrt(1 - p)``; the first step runs at ``m`` (at LR 0 for ``m = 0``, as Hugging Face does);
    * stable, ``W <= t < W + S``: 1;
    * decay, ``W + S <= t < W + S + D``: ``max(0, g(p) * (1 - m) + m)`` with ``p = (t - W - S) / D`` and ``g`` =
      ``1 - p``, ``(1 + cos(2 pi c p)) / 2`` (``c = num_cycles``, 0.5 is a half cosine) or ``1 - sqrt(p)``;
    * after: ``m``.

    Args:
        t: optimizer steps (or epochs) done before this one.
        warmup: ``W``, steps of warmup.
        stable: ``S``, steps at the peak.
        decay: ``D``, steps of decay.
        warmup_shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        decay_shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        min_lr_ratio: ``m``, the floor as a fraction of the base LR (also where the warmup starts).
        num_cycles: waves of the cosine decay; 0.5 (default) is one half cosine from 1 down to ``m``.
    """
    if t < warmup:
        progress = float(t) / float(max(1, warmup))
        return max(0.0, _warmup_shape(progress, warmup_shape) * (1.0 - min_lr_ratio) + min_lr_ratio)
    if t < warmup + stable:
        return 1.0
    if t < warmup + stable + decay:
        progress = float(t - warmup - stable) / float(max(1, decay))
        return max(0.0, _decay_shape(progress, decay_shape, num_cycles) * (1.0 - min_lr_ratio) + min_lr_ratio)
    return min_lr_ratio


def wsd_stable_length(total: int, warmup: int, decay: int) -> int:
    """The stable phase that fills a run of ``total`` steps: ``total - warmup - decay`` (Hugging Face's rule).

    Raises:
        ValueError: warmup and decay together are longer than the run.
    """
    stable = total - warmup - decay
    if stable < 0:
        raise ValueError(
            f"warmup ({warmup}) + decay ({decay}) = {warmup + decay} steps is longer than the run ({total} steps): "
            "shorten the warmup or the decay, or train longer."
        )
    return stable
