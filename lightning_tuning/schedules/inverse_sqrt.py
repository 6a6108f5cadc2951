"""Inverse square-root decay (Vaswani et al. 2017; fairseq; Hugging Face's ``get_inverse_sqrt_schedule``)."""

from __future__ import annotations

import math

DEFAULT_TIMESCALE = 10_000
"""Hugging Face's timescale when neither it nor a warmup is given."""


def default_timescale(warmup: int, timescale: int | None) -> int:
    """``timescale`` if given, else the warmup length, else 10 000 (Hugging Face's defaults)."""
    if timescale is not None:
        return timescale
    return warmup or DEFAULT_TIMESCALE


def inverse_sqrt_factor(t: int, warmup: int, timescale: int | None = None) -> float:
    """The multiplier of the base LR for the step with index ``t``, exactly Hugging Face's lambda.

    * ``t < W``: ``t / W`` (linear warmup from LR 0);
    * ``t >= W``: ``1 / sqrt((t + tau - W) / tau)``: exactly 1 at ``t = W``, then ``~ sqrt(tau / t)``.

    Args:
        t: optimizer steps done before this one.
        warmup: ``W``, steps of linear warmup (0 for none).
        timescale: ``tau``; default the warmup length, or 10 000 without warmup.
    """
    if t < warmup:
        return float(t) / float(max(1, warmup))
    tau = default_timescale(warmup, timescale)
    shift = tau - warmup
    return 1.0 / math.sqrt((t + shift) / tau)
