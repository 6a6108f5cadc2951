"""Which activation feeds and follows each layer, the order layers run in, and the output layer(s): one traced forward.

Module hooks see when a layer starts and ends; a :class:`~torch.overrides.TorchFunctionMode` sees every activation
*function* call, so both ``nn.ReLU()`` modules and ``F.relu``/``torch.tanh``/``x.relu()`` in a ``forward`` are found.

* A layer's **following** activation is the first activation called after the layer ends and before the next layer
  starts (``linear`` when another layer or nothing comes first); it is what the dead-ReLU statistic looks at.
* A layer's **input** activation is the last activation called between the previous layer's end (or the start of the
  forward) and this layer's start; ``linear`` when there is none, e.g. for the first layer, which reads raw data. This
  is the one ``gain: auto`` uses: a layer's gain compensates for the activation its *input* went through (He et al.).

Operations in between that are not activations (norm layers, dropout, reshapes, additions) are looked through.

The **output layers** are found from the autograd graph of what the traced function returned: walking back from the
output, the first layers (other than norm layers) reached on every path. For ``forward`` that is the last
parametrised layer before the output (a ``log_softmax``, ``tanh`` or reshape after it is looked through).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from lightning_tuning.init.gain import LINEAR, Activation
from lightning_tuning.init.rules import module_table


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
        input_activation: Layer name → the activation its input went through (``linear`` for raw data).
        input_source: Layer name → the layer whose output reached this layer's input through elementwise activations
            only (``Linear -> GELU -> Linear``), or ``None`` (raw data, a norm layer in between, no activation).
        untraced: Layers that never ran in the traced forward.
        output_layers: Layers whose output reaches the traced function's result without passing another layer (norm
            layers looked through), in execution order. Empty when the result carries no autograd graph.
    """

    order: list[str] = field(default_factory=list)
    activation: dict[str, Activation] = field(default_factory=dict)
    input_activation: dict[str, Activation] = field(default_factory=dict)
    input_source: dict[str, str | None] = field(default_factory=dict)
    untraced: list[str] = field(default_factory=list)
    output_layers: list[str] = field(default_factory=list)


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.open_layer: str | None = None  # the last layer that ended and has not yet met an activation
        self.last_activation: Activation | None = None  # the last activation since a layer ended (or the start)
        self.feeding_layer: str | None = None  # the last layer that ended, while no norm layer ran after it
        self.last_source: str | None = None  # the layer the last activation was applied to (via feeding_layer)
        self.result = TraceResult()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = _ACTIVATIONS.get(func)
        if name is not None:
            param = _leaky_slope(func, args, kwargs) if name == "leaky_relu" else None
            known_by_torch = name in ("relu", "leaky_relu", "tanh", "sigmoid", "selu")
            fn = None if known_by_torch else _bind(func, args, kwargs)
            activation = Activation(name, param, fn)
            self.last_activation = activation
            if self.feeding_layer is not None:
                self.last_source = self.feeding_layer
            if self.open_layer is not None:
                self.result.activation[self.open_layer] = activation
                self.open_layer = None
        return func(*args, **(kwargs or {}))


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _output_layers(result: Any, node_layer: dict[Any, str]) -> list[str]:
    """Walk the autograd graph back from ``result`` and stop at the first layer output met on each path."""
    stack = [t.grad_fn for t in _tensors(result) if t.grad_fn is not None]
    seen: set[Any] = set()
    found: set[str] = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        layer = node_layer.get(node)
        if layer is not None:
            found.add(layer)
            continue
        stack.extend(next_node for next_node, _ in node.next_functions if next_node is not None)
    return sorted(found)


def trace_activations(model: nn.Module, layers: Iterable[str], run_forward: Callable[[], Any]) -> TraceResult:
    """Run ``run_forward()`` once with hooks on ``layers`` (qualified names in ``model``) and return what it found.

    Run it with gradients enabled (no backward is made) so the output layers can be found from the autograd graph;
    under ``torch.no_grad()`` ``output_layers`` falls back to the last layer that ran.

    Args:
        model: The module whose submodules are named by ``layers``. The root module itself (name ``""``) is never
            traced as a layer: its hooks would wrap the whole forward.
        layers: Qualified names of the layers to trace (e.g. every module that holds a weight).
        run_forward: Runs a forward pass of ``model`` (and maybe a loss); its result is where the output layers are
            searched from.
    """
    modules = module_table(model)
    layers = [name for name in layers if name]
    recorder = _Recorder()
    handles = []
    node_layer: dict[Any, str] = {}

    transparent = {name for name in layers if isinstance(modules[name], _TRANSPARENT)}

    def pre_hook(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            if name in transparent:
                return
            if recorder.open_layer is not None:  # a layer feeding straight into another layer
                recorder.result.activation.setdefault(recorder.open_layer, LINEAR)
            recorder.open_layer = None
            recorder.result.input_activation.setdefault(name, recorder.last_activation or LINEAR)
            source = recorder.last_source if recorder.last_activation is not None else None
            recorder.result.input_source.setdefault(name, source)
            recorder.last_activation = None
            recorder.last_source = None

        return hook

    def post_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name in transparent:
                if name not in recorder.result.order:
                    recorder.result.order.append(name)
                recorder.feeding_layer = None  # a norm layer resets the scale: no chain through it
                return
            recorder.last_activation = None
            recorder.last_source = None
            recorder.feeding_layer = name
            tensors = _tensors(output)
            if tensors and tensors[0].grad_fn is not None:
                node_layer.setdefault(tensors[0].grad_fn, name)  # the innermost layer first (its hook runs first)
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
            output = run_forward()
    finally:
        for handle in handles:
            handle.remove()
    result = recorder.result
    for name in result.order:
        if name not in transparent:
            result.activation.setdefault(name, LINEAR)
            result.input_activation.setdefault(name, LINEAR)
            result.input_source.setdefault(name, None)
    result.untraced = [name for name in layers if name not in result.order]
    found = set(_output_layers(output, node_layer))
    if not found:  # no autograd graph (no_grad, frozen model, non-tensor result): the last layer that ran
        ran = [name for name in result.order if name not in transparent]
        found = {ran[-1]} if ran else set()
    result.output_layers = [name for name in result.order if name in found]
    return result


def _module_activation(module: nn.Module) -> Activation | None:
    """The activation an ``nn.ReLU()``-style module applies, or ``None`` for any other module."""
    simple = {
        nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SELU: "selu", nn.SiLU: "silu", nn.Mish: "mish",
        nn.ELU: "elu", nn.CELU: "celu", nn.Softplus: "softplus", nn.Hardswish: "hardswish", nn.Hardtanh: "hardtanh",
        nn.ReLU6: "relu6", nn.Softsign: "softsign", nn.LogSigmoid: "logsigmoid", nn.GELU: "gelu",
    }  # fmt: skip
    if isinstance(module, nn.LeakyReLU):
        return Activation("leaky_relu", float(module.negative_slope))
    for klass in type(module).__mro__:
        name = simple.get(klass)
        if name is None:
            continue
        if name in ("relu", "tanh", "sigmoid", "selu"):
            return Activation(name)
        if name == "relu6":  # ReLU6 is a Hardtanh subclass: check it before its base
            return Activation(name, None, F.relu6)

        def apply(x: torch.Tensor, m: nn.Module = module) -> torch.Tensor:
            return m(x.clone())

        return Activation(name, None, apply)
    return None


def structural_input_activations(model: nn.Module, layers: Iterable[str]) -> dict[str, Activation]:
    """Input activations read from the model's structure, for layers a traced forward never reached.

    Only what the structure states for sure is returned: a layer inside an ``nn.Sequential`` gets the activation
    module before it (norm and dropout modules looked through), ``linear`` when another layer comes first, and
    ``linear`` when it is the first layer of a ``Sequential`` that is a direct child of ``model`` (it reads the data
    given to that submodule). Layers with nothing certain before them are left out.
    """
    modules = module_table(model)
    wanted = set(layers)
    found: dict[str, Activation] = {}
    for seq_name, seq in modules.items():
        if not isinstance(seq, nn.Sequential):
            continue
        previous: Activation | None = None
        for child_name, child in seq.named_children():
            qualified = f"{seq_name}.{child_name}" if seq_name else child_name
            activation = _module_activation(child)
            if activation is not None:
                previous = activation
                continue
            if isinstance(child, _TRANSPARENT):
                continue
            if qualified in wanted:
                if previous is not None:
                    found[qualified] = previous
                elif seq_name and "." not in seq_name:
                    found[qualified] = LINEAR
            previous = LINEAR
    return found
