"""Learning rates scaled with the global batch size: the linear (Goyal et al. 2017) and square-root (Krizhevsky
2014; Malladi et al. 2022 for Adam) rules, and timm's ``auto`` choice between them."""

from __future__ import annotations

import math
from typing import Literal

ScaleRule = Literal["linear", "sqrt", "auto"]
SCALE_RULES: tuple[str, ...] = ("linear", "sqrt", "auto")


def resolve_rule(rule: ScaleRule, optimizer_name: str) -> Literal["linear", "sqrt"]:
    """``auto``: ``sqrt`` for adaptive optimizers (a class name containing ``ada`` or ``lamb``: Adam, AdamW, NAdam,
    RAdam, Adagrad, Adadelta, Adamax, LAMB, AdamWScheduleFree...), ``linear`` otherwise (SGD, RMSprop, LARS...),
    timm's convention (``train.py``, ``--lr-base-scale``)."""
    if rule != "auto":
        return rule
    name = optimizer_name.lower()
    return "sqrt" if "ada" in name or "lamb" in name else "linear"


def global_batch_size(per_device: int, devices: int, nodes: int, accumulation: int) -> int:
    """Samples per optimizer step over the whole job: ``per_device * devices * nodes * accumulation``."""
    return per_device * devices * nodes * accumulation


def batch_scale_factor(global_batch: int, reference_batch: int, rule: Literal["linear", "sqrt"]) -> float:
    """``B / B_ref`` (linear) or ``sqrt(B / B_ref)`` (sqrt): the multiplier of LRs tuned at ``B_ref``."""
    ratio = global_batch / reference_batch
    return ratio if rule == "linear" else math.sqrt(ratio)
