"""Initialisation schemes: names, arguments (validated), and how each one fills a tensor.

Arguments follow :mod:`torch.nn.init` (``gain``, ``mode``, ``nonlinearity``, ``a``, ``mean``, ``std``, ``b``). Where
conventions differ between libraries, this is what is meant:

* ``kaiming_normal`` / ``xavier_normal`` are **untruncated**, as in torch (Keras' and JAX's "HeNormal"/"GlorotNormal"
  are truncated; get those with ``variance_scaling`` and ``distribution: truncated_normal``).
* ``trunc_normal``'s ``a`` and ``b`` are **absolute** bounds, as in ``torch.nn.init.trunc_normal_`` (its defaults
  ``a=-2, b=2`` truncate nothing when ``std=0.02``).
* ``lecun_normal`` (not in torch) follows Keras/JAX/timm: std ``1/sqrt(fan_in)``, truncated at two standard deviations
  and corrected so the std is still ``1/sqrt(fan_in)``; ``truncate: false`` gives the plain normal.
* ``variance_scaling`` is Keras' ``VarianceScaling(scale, mode, distribution)``: variance ``scale / fan``.
* ``gain`` (xavier, orthogonal) and ``nonlinearity`` (kaiming) accept ``"auto"``: the activation that follows the layer
  in execution order (see :mod:`lightning_tuning.init.tracing`); gains of activations torch does not know are computed
  (:mod:`lightning_tuning.init.gain`).
* ``default`` calls the module's own ``reset_parameters()``; ``keep`` leaves the parameter as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lightning_tuning.init.fans import select_fan
from lightning_tuning.init.gain import Activation, known_nonlinearities, nonlinearity_gain

#: Std of a standard normal truncated to [-2, 2] (Keras/JAX correction constant).
TRUNCATED_STD_2SIGMA = 0.87962566103423978


@dataclass(frozen=True)
class Scheme:
    """One scheme: its defaults (which are also the only accepted argument names) and its required arguments."""

    name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    needs_fan: bool = False
    uses_activation: bool = False


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("zeros"),
        Scheme("ones"),
        Scheme("constant", required=("value",)),
        Scheme("normal", {"mean": 0.0, "std": 1.0}),
        Scheme("uniform", {"a": 0.0, "b": 1.0}),
        Scheme("trunc_normal", {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0}),
        Scheme("xavier_uniform", {"gain": 1.0}, needs_fan=True, uses_activation=True),
        Scheme("xavier_normal", {"gain": 1.0}, needs_fan=True, uses_activation=True),
        Scheme(
            "kaiming_uniform",
            {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
            needs_fan=True,
            uses_activation=True,
        ),
        Scheme(
            "kaiming_normal",
            {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
            needs_fan=True,
            uses_activation=True,
        ),
        Scheme("lecun_normal", {"truncate": True}, needs_fan=True),
        Scheme(
            "variance_scaling", {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}, needs_fan=True
        ),
        Scheme("orthogonal", {"gain": 1.0}, needs_fan=True, uses_activation=True),
        Scheme("default"),
        Scheme("keep"),
    )
}

_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad(scheme: str, arg: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"Scheme {scheme!r}: argument {arg}={value!r} is invalid; allowed: {allowed}.")


def validate_scheme(name: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a scheme name and its arguments; return the arguments with defaults filled in.

    Raises:
        ValueError: Unknown scheme (lists the allowed ones), unknown argument (lists the scheme's arguments), a missing
            required argument, or a value of the wrong kind (says what is allowed).
    """
    if name not in SCHEMES:
        raise ValueError(f"Unknown init scheme {name!r}. Allowed: {', '.join(SCHEMES)}.")
    scheme = SCHEMES[name]
    args = dict(args or {})
    allowed = [*scheme.defaults, *scheme.required]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(
            f"Scheme {name!r} got unknown argument(s) {unknown}. Allowed: {allowed or 'none'} (torch.nn.init names)."
        )
    missing = [arg for arg in scheme.required if arg not in args]
    if missing:
        raise ValueError(f"Scheme {name!r} needs argument(s) {missing}, e.g. {{value: 0.1}}.")
    resolved = {**scheme.defaults, **args}
    for arg in ("mean", "std", "a", "b", "value", "scale"):
        if arg in resolved and not _is_number(resolved[arg]):
            raise _bad(name, arg, resolved[arg], "a number")
    if "std" in resolved and resolved["std"] <= 0:
        raise _bad(name, "std", resolved["std"], "a positive number")
    if "scale" in resolved and resolved["scale"] <= 0:
        raise _bad(name, "scale", resolved["scale"], "a positive number")
    if name in ("uniform", "trunc_normal") and not resolved["a"] < resolved["b"]:
        raise _bad(name, "a/b", (resolved["a"], resolved["b"]), "a < b")
    if "mode" in resolved:
        modes = ("fan_in", "fan_out", "fan_avg") if name == "variance_scaling" else ("fan_in", "fan_out")
        if resolved["mode"] not in modes:
            raise _bad(name, "mode", resolved["mode"], ", ".join(modes))
    if "distribution" in resolved and resolved["distribution"] not in _DISTRIBUTIONS:
        raise _bad(name, "distribution", resolved["distribution"], ", ".join(_DISTRIBUTIONS))
    if "truncate" in resolved and not isinstance(resolved["truncate"], bool):
        raise _bad(name, "truncate", resolved["truncate"], "true or false")
    for arg in ("gain", "nonlinearity"):
        if arg not in resolved:
            continue
        value = resolved[arg]
        if arg == "gain" and _is_number(value):
            if value <= 0:
                raise _bad(name, arg, value, "a positive number, 'auto' or a nonlinearity name")
            continue
        if not isinstance(value, str):
            raise _bad(name, arg, value, "a number (gain only), 'auto' or a nonlinearity name")
        if value != "auto" and value.lower() not in known_nonlinearities():
            raise _bad(name, arg, value, f"'auto' or one of {', '.join(known_nonlinearities())}")
    return resolved


def needs_activation(name: str, args: Mapping[str, Any]) -> bool:
    """Whether this scheme, with these arguments, needs the traced activation (an ``"auto"`` gain/nonlinearity)."""
    return args.get("gain") == "auto" or args.get("nonlinearity") == "auto"


def resolve_gain(name: str, args: Mapping[str, Any], activation: Activation | None) -> float:
    """The numeric gain a scheme uses, resolving ``"auto"`` from the traced activation.

    Raises:
        ValueError: If ``"auto"`` is asked for but no activation was traced for this layer.
    """
    key = "nonlinearity" if "nonlinearity" in args else "gain"
    value = args[key]
    if value == "auto":
        if activation is None:
            raise ValueError(
                f"Scheme {name!r} has {key}='auto' but no forward pass was traced to find the activation. Give the"
                " LightningModule an `example_input_array` or a training dataloader, or name the nonlinearity."
            )
        return activation.gain()
    if _is_number(value):
        return float(value)
    param = args.get("a") if key == "nonlinearity" else None
    return nonlinearity_gain(value, param)


def _truncated_normal(shape: tuple[int, ...], std: float, generator: torch.Generator) -> torch.Tensor:
    """N(0, std) truncated at +-2 sigma, rescaled so the result's std is ``std`` (the Keras/JAX convention)."""
    tensor = torch.empty(shape)
    sigma = std / TRUNCATED_STD_2SIGMA
    return torch.nn.init.trunc_normal_(tensor, 0.0, sigma, -2 * sigma, 2 * sigma, generator=generator)


_Filler = Callable[[tuple[int, ...], dict[str, Any], float, torch.Generator], torch.Tensor]


def sample(
    name: str,
    shape: tuple[int, ...],
    args: Mapping[str, Any],
    generator: torch.Generator,
    activation: Activation | None = None,
) -> torch.Tensor:
    """A new float32 CPU tensor of ``shape`` drawn from scheme ``name`` (arguments already validated).

    ``default`` and ``keep`` are not tensors of their own (they depend on the module) and raise ``ValueError`` here.
    """
    gain = resolve_gain(name, args, activation) if ("gain" in args or "nonlinearity" in args) else 1.0
    out = torch.empty(shape, dtype=torch.float32)
    init = torch.nn.init
    if name == "zeros":
        return out.zero_()
    if name == "ones":
        return out.fill_(1.0)
    if name == "constant":
        return out.fill_(float(args["value"]))
    if name == "normal":
        return init.normal_(out, args["mean"], args["std"], generator=generator)
    if name == "uniform":
        return init.uniform_(out, args["a"], args["b"], generator=generator)
    if name == "trunc_normal":
        return init.trunc_normal_(out, args["mean"], args["std"], args["a"], args["b"], generator=generator)
    if name in ("xavier_uniform", "xavier_normal"):
        std = gain * math.sqrt(1.0 / select_fan(shape, "fan_avg"))
        if name == "xavier_normal":
            return init.normal_(out, 0.0, std, generator=generator)
        return init.uniform_(out, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator=generator)
    if name in ("kaiming_uniform", "kaiming_normal"):
        std = gain / math.sqrt(select_fan(shape, args["mode"]))
        if name == "kaiming_normal":
            return init.normal_(out, 0.0, std, generator=generator)
        return init.uniform_(out, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator=generator)
    if name == "lecun_normal":
        std = 1.0 / math.sqrt(select_fan(shape, "fan_in"))
        if args["truncate"]:
            return _truncated_normal(shape, std, generator)
        return init.normal_(out, 0.0, std, generator=generator)
    if name == "variance_scaling":
        std = math.sqrt(args["scale"] / select_fan(shape, args["mode"]))
        if args["distribution"] == "truncated_normal":
            return _truncated_normal(shape, std, generator)
        if args["distribution"] == "normal":
            return init.normal_(out, 0.0, std, generator=generator)
        return init.uniform_(out, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator=generator)
    if name == "orthogonal":
        select_fan(shape, "fan_in")  # same clear error as the other fan-based schemes for a 1-D tensor
        return init.orthogonal_(out, gain, generator=generator)
    raise ValueError(f"Scheme {name!r} does not produce a tensor by itself (it depends on the module).")
