"""Which activation follows each layer, and the order layers run in: found from one traced forward pass.

Module hooks see when a layer starts and ends; a :class:`~torch.overrides.TorchFunctionMode` sees every activation
*function* call, so both ``nn.ReLU()`` modules and ``F.relu``/``torch.tanh``/``x.relu()`` in a ``forward`` are found.
A layer's activation is the first activation called after the layer ends and before the next layer starts; a layer
followed by another layer (or by nothing) is ``linear``. Operations in between that are not activations (norm layers,
dropout, reshapes, additions) are looked through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from lightning_tuning.init.gain import LINEAR, Activation


def _activation_table() -> dict[Any, str]:
    table: dict[Any, str] = {}
    pairs = {
        "relu": (F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_),
        "leaky_relu": (F.leaky_relu, F.leaky_relu_, torch._C._nn.leaky_relu),
        "tanh": (F.tanh, torch.tanh, torch.Tensor.tanh, torch.tanh_),
        "sigmoid": (F.sigmoid, torch.sigmoid, torch.Tensor.sigmoid, torch.sigmoid_),
        "selu": (F.selu, torch.selu, torch.selu_),
        "gelu": (F.gelu,),
        "silu": (F.silu,),
        "mish": (F.mish,),
        "elu": (F.elu, F.elu_),
        "celu": (F.celu,),
        "softplus": (F.softplus,),
        "hardswish": (F.hardswish,),
        "hardtanh": (F.hardtanh, F.hardtanh_),
        "relu6": (F.relu6,),
        "softsign": (F.softsign,),
        "logsigmoid": (F.logsigmoid,),
        "prelu": (F.prelu,),
    }
    for name, fns in pairs.items():
        for fn in fns:
            table[fn] = name
    return table


_ACTIVATIONS = _activation_table()
# Layers between a weight layer and its activation that do not change which activation the weight layer feeds.
_TRANSPARENT = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.Dropout)
_INPLACE_TO_PURE = {torch.relu_: torch.relu, F.relu_: F.relu, F.leaky_relu_: F.leaky_relu, F.elu_: F.elu,
                    F.hardtanh_: F.hardtanh, torch.tanh_: torch.tanh, torch.sigmoid_: torch.sigmoid,
                    torch.selu_: torch.selu}  # fmt: skip


def _bind(func: Any, args: tuple, kwargs: dict | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation as a pure function of its input, with the traced call's other arguments bound."""
    func = _INPLACE_TO_PURE.get(func, func)
    rest = tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args[1:])
    extra = {k: v for k, v in (kwargs or {}).items() if k != "inplace"}
    if func in (F.relu, F.elu, F.hardtanh, F.leaky_relu, F.relu6, F.celu, F.selu):
        extra["inplace"] = False
        rest = tuple(a for a in rest if not isinstance(a, bool))
    return lambda x: func(x, *rest, **extra)


def _leaky_slope(func: Any, args: tuple, kwargs: dict | None) -> float:
    if len(args) > 1 and isinstance(args[1], (int, float)):
        return float(args[1])
    return float((kwargs or {}).get("negative_slope", 0.01))


@dataclass
class TraceResult:
    """What one traced forward found.

    Attributes:
        order: Qualified names of the traced layers, in the order they first ran.
        activation: Layer name → the activation that follows it (``linear`` when none does). Norm layers are looked
            through and get no entry of their own.
        untraced: Layers that never ran in the traced forward.
    """

    order: list[str] = field(default_factory=list)
    activation: dict[str, Activation] = field(default_factory=dict)
    untraced: list[str] = field(default_factory=list)


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.open_layer: str | None = None  # the last layer that ended and has not yet met an activation
        self.result = TraceResult()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = _ACTIVATIONS.get(func)
        if name is not None and self.open_layer is not None:
            param = _leaky_slope(func, args, kwargs) if name == "leaky_relu" else None
            known_by_torch = name in ("relu", "leaky_relu", "tanh", "sigmoid", "selu")
            fn = None if known_by_torch else _bind(func, args, kwargs)
            self.result.activation[self.open_layer] = Activation(name, param, fn)
            self.open_layer = None
        return func(*args, **(kwargs or {}))


def trace_activations(model: nn.Module, layers: Iterable[str], run_forward: Callable[[], Any]) -> TraceResult:
    """Run ``run_forward()`` once with hooks on ``layers`` (qualified names in ``model``) and return what follows each.

    Args:
        model: The module whose submodules are named by ``layers``.
        layers: Qualified names of the layers to trace (e.g. every module that holds a weight).
        run_forward: Runs a forward pass of ``model`` (and maybe a loss); its result is ignored.
    """
    modules = dict(model.named_modules())
    layers = list(layers)
    recorder = _Recorder()
    handles = []

    transparent = {name for name in layers if isinstance(modules[name], _TRANSPARENT)}

    def pre_hook(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            if name in transparent:
                return
            if recorder.open_layer is not None:  # a layer feeding straight into another layer
                recorder.result.activation.setdefault(recorder.open_layer, LINEAR)
            recorder.open_layer = None

        return hook

    def post_hook(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            if name in transparent:
                if name not in recorder.result.order:
                    recorder.result.order.append(name)
                return
            if name not in recorder.result.activation and name not in recorder.result.order:
                recorder.result.order.append(name)
                recorder.open_layer = name
            elif name not in recorder.result.order:
                recorder.result.order.append(name)

        return hook

    try:
        for name in layers:
            handles.append(modules[name].register_forward_pre_hook(pre_hook(name)))
            handles.append(modules[name].register_forward_hook(post_hook(name)))
        with recorder:
            run_forward()
    finally:
        for handle in handles:
            handle.remove()
    result = recorder.result
    for name in result.order:
        if name not in transparent:
            result.activation.setdefault(name, LINEAR)
    result.untraced = [name for name in layers if name not in result.order]
    return result
