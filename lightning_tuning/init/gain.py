"""Gain of an activation function, for any elementwise activation.

Definition used for activations that :func:`torch.nn.init.calculate_gain` does not know (GELU, SiLU, Mish, ELU,
Softplus, ...)::

    gain(f) = 1 / sqrt(E[f(x)^2]),   x ~ N(0, 1)

i.e. the factor that restores a unit second moment after ``f`` when its input is standard normal. For ReLU this gives
``sqrt(2)``, exactly He et al.'s gain. The expectation is computed deterministically by quadrature on a fine grid (no
sampling, so every rank and every run gets the same number). For the names torch knows (``linear``, ``conv*``,
``sigmoid``, ``tanh``, ``relu``, ``leaky_relu``, ``selu``) torch's own values are returned unchanged, so ``"auto"`` on a
ReLU network gives bit-identical results to ``nonlinearity="relu"`` (note torch's tanh gain is 5/3 and sigmoid's is 1,
which are conventions, not this definition).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F

TORCH_KNOWN = (
    "linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "sigmoid", "tanh", "relu", "leaky_relu", "selu",
)  # fmt: skip

#: Activations whose gain is computed numerically, by name (the name a rule may give as ``nonlinearity``/``gain``).
NUMERIC_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "elu": F.elu,
    "celu": F.celu,
    "softplus": F.softplus,
    "hardswish": F.hardswish,
    "hardtanh": F.hardtanh,
    "relu6": F.relu6,
    "softsign": F.softsign,
    "logsigmoid": F.logsigmoid,
}


def known_nonlinearities() -> list[str]:
    """Every nonlinearity name :func:`nonlinearity_gain` accepts."""
    return sorted({*TORCH_KNOWN, *NUMERIC_ACTIVATIONS})


def numeric_gain(fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """``1 / sqrt(E[fn(x)^2])`` for ``x ~ N(0, 1)``, by trapezoidal quadrature on [-12, 12] (error far below 1e-6).

    Raises:
        ValueError: If ``fn`` maps the standard normal to (almost) zero, so that no finite gain exists.
    """
    x = torch.linspace(-12.0, 12.0, 240_001, dtype=torch.float64)
    with torch.no_grad():
        y = fn(x.clone()).to(torch.float64)
    density = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    second_moment = float(torch.trapezoid(y * y * density, x))
    if not math.isfinite(second_moment) or second_moment < 1e-12:
        raise ValueError(f"E[f(x)^2] = {second_moment} for x ~ N(0, 1): this activation has no finite gain.")
    return 1.0 / math.sqrt(second_moment)


@cache
def _numeric_gain_by_name(name: str) -> float:
    return numeric_gain(NUMERIC_ACTIVATIONS[name])


def nonlinearity_gain(nonlinearity: str, param: float | None = None) -> float:
    """Gain for a named nonlinearity: torch's value where torch has one, the numeric definition otherwise.

    Args:
        nonlinearity: A name from :func:`known_nonlinearities`.
        param: Negative slope for ``leaky_relu`` (torch's default 0.01 when ``None``).

    Raises:
        ValueError: For an unknown name; the message lists the allowed ones.
    """
    name = nonlinearity.lower()
    if name in TORCH_KNOWN:
        return float(torch.nn.init.calculate_gain(name, param))  # type: ignore[arg-type]
    if name in NUMERIC_ACTIVATIONS:
        return _numeric_gain_by_name(name)
    raise ValueError(
        f"nonlinearity={nonlinearity!r} is unknown. Allowed: {', '.join(known_nonlinearities())},"
        " or 'auto' to detect it from the activation that follows the layer, or give a number as `gain`."
    )


class Activation:
    """The activation found after a layer by tracing: its name, its parameter (leaky slope) and the function itself.

    Args:
        name: A lower-case name such as ``"relu"`` or ``"gelu"``; ``"linear"`` when no activation follows.
        param: The negative slope of a ``leaky_relu``.
        fn: The traced function with its keyword arguments bound, used for the numeric gain of unnamed activations.
    """

    def __init__(self, name: str, param: float | None = None, fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.name = name
        self.param = param
        self.fn = fn

    def gain(self) -> float:
        """torch's gain when torch knows the name, else ``1 / sqrt(E[f(x)^2])``."""
        if self.name in TORCH_KNOWN:
            return float(torch.nn.init.calculate_gain(self.name, self.param))  # type: ignore[arg-type]
        if self.fn is not None:
            return numeric_gain(self.fn)
        return nonlinearity_gain(self.name, self.param)

    def __repr__(self) -> str:
        return self.name if self.param is None else f"{self.name}({self.param:g})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Activation) and (self.name, self.param) == (other.name, other.param)

    def __hash__(self) -> int:
        return hash((self.name, self.param))


LINEAR = Activation("linear")


def variance_map_slope(fn: Callable[[torch.Tensor], torch.Tensor], scale: float = 1.0) -> float:
    """``d log E[fn(s x)^2] / d log s^2`` at ``s = scale``, ``x ~ N(0, 1)``: how a relative change of a layer's input
    variance carries to the next layer's, under a gain fixed for unit variance. 1 for ReLU (neutral), below 1 for
    tanh (pulled back), above 1 for GELU (1.14) and SiLU (1.17): there the fixed point is unstable."""
    # the threshold it is compared with is 2% away from any activation's value: a coarse grid is plenty (1 ms)
    x = torch.linspace(-12.0, 12.0, 24_001, dtype=torch.float64)
    density = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    step = 1e-3

    def log_moment(q: float) -> float:
        with torch.no_grad():
            y = fn(math.sqrt(q) * x).to(torch.float64)
        return math.log(float(torch.trapezoid(y * y * density, x)))

    q = scale * scale
    return (log_moment(q * (1 + step)) - log_moment(q * (1 - step))) / (math.log1p(step) - math.log1p(-step))


#: An activation is treated as having an unstable fixed point above this slope (numerical noise stays far below).
UNSTABLE_SLOPE = 1.02


@cache
def _unstable_by_name(name: str) -> bool:
    return variance_map_slope(NUMERIC_ACTIVATIONS[name]) > UNSTABLE_SLOPE


def has_unstable_fixed_point(activation: Activation) -> bool:
    """Whether ``activation``'s variance map amplifies small deviations (see :func:`variance_map_slope`).

    torch's named activations (ReLU, LeakyReLU, tanh, sigmoid, SELU, linear) never are; the others are measured.
    """
    if activation.name in TORCH_KNOWN:
        return False
    if activation.fn is not None:  # the traced function with its own arguments (gelu approximate='tanh', ...)
        return variance_map_slope(activation.fn) > UNSTABLE_SLOPE
    if activation.name in NUMERIC_ACTIVATIONS:
        return _unstable_by_name(activation.name)
    return False
