"""Fan-in / fan-out of a weight tensor, in PyTorch's layout convention.

PyTorch stores a ``Linear`` weight as ``(out, in)`` and a ``Conv{1,2,3}d`` weight as ``(out, in / groups, *kernel)``,
so ``fan_in = size(1) * prod(kernel)`` and ``fan_out = size(0) * prod(kernel)``. ``ConvTranspose`` stores
``(in, out / groups, *kernel)`` and torch.nn.init does *not* swap the two for it; neither do we, so results equal
torch.nn.init's. Keras and JAX use the ``(*kernel, in, out)`` layout instead; their numbers differ for convolutions.
"""

from __future__ import annotations

import math
from typing import Literal

FanMode = Literal["fan_in", "fan_out", "fan_avg"]


def compute_fans(shape: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight of this shape (torch.nn.init's convention).

    Raises:
        ValueError: If the tensor has fewer than two dimensions (a bias has no fan of its own).
    """
    if len(shape) < 2:
        raise ValueError(
            f"Fan in and fan out need a tensor with at least 2 dimensions, got shape {tuple(shape)}. Schemes that scale"
            " by the fan (xavier_*, kaiming_*, lecun_normal, variance_scaling, orthogonal) cannot be used for a bias;"
            " use zeros, constant, normal, uniform or default for it."
        )
    receptive_field = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive_field, shape[0] * receptive_field


def select_fan(shape: tuple[int, ...] | list[int], mode: str) -> float:
    """The fan that a ``mode`` of ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"`` (mean of the two) refers to."""
    fan_in, fan_out = compute_fans(shape)
    if mode == "fan_in":
        return float(fan_in)
    if mode == "fan_out":
        return float(fan_out)
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2.0
    raise ValueError(f"mode={mode!r} is not a fan mode; allowed: 'fan_in', 'fan_out', 'fan_avg'.")
