"""Per-layer init statistics: weight std, output mean/std on a real batch, gradient std after one backward, dead ReLUs.

Pure torch: the caller supplies the model, the traced layer order and activations, and a function that runs a forward
pass and returns a scalar loss. The caller is responsible for RNG, train/eval mode and buffer (BatchNorm) hygiene.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from lightning_tuning.init.gain import Activation
from lightning_tuning.init.rules import module_param_names, module_table

_DEAD_CAPABLE = ("relu", "relu6")


@dataclass
class LayerStats:
    """Statistics of one layer at init.

    Attributes:
        layer: Qualified module name.
        kind: Module class name.
        activation: The activation that follows it (traced).
        weight_std: Std of its weight (the effective one for a parametrised weight).
        act_mean: Mean of the layer's output on the batch (before the activation).
        act_std: Std of the layer's output.
        grad_std: Std of the weight's gradient after one backward of the training loss (NaN without a loss).
        dead_frac: Fraction of units whose ReLU is zero for every example of the batch (NaN for other activations).
    """

    layer: str
    kind: str
    activation: str
    weight_std: float
    act_mean: float
    act_std: float
    grad_std: float
    dead_frac: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weight_name(module: nn.Module) -> str | None:
    names = module_param_names(module)
    return "weight" if "weight" in names else next((n for n in names if not n.startswith("bias")), None)


def _unit_dim(module: nn.Module, output: torch.Tensor) -> int:
    return 1 if isinstance(module, nn.modules.conv._ConvNd) and output.dim() > 2 else output.dim() - 1


def layer_statistics(
    model: nn.Module,
    layers: Sequence[str],
    activations: Mapping[str, Activation],
    run_loss: Callable[[], torch.Tensor | None],
    untraced: Collection[str] = (),
) -> list[LayerStats]:
    """Measure every layer in ``layers`` with one forward and one backward of ``run_loss()``.

    Layers in ``untraced`` (never reached by the traced call) are labelled so; their output statistics are NaN.

    Gradients are computed with ``torch.autograd.grad`` so no ``.grad`` is written and nothing is left to zero.
    """
    modules = module_table(model)
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def capture(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
                output = output[0]  # MultiheadAttention returns (attn_output, attn_weights)
            if name not in outputs and isinstance(output, torch.Tensor) and output.is_floating_point():
                outputs[name] = output.detach()

        return capture

    layers = [name for name in layers if name]  # the root's own parameters get rows of their own below
    try:
        for name in layers:
            handles.append(modules[name].register_forward_hook(hook(name)))
        loss = run_loss()
    finally:
        for handle in handles:
            handle.remove()

    weights = {}
    for name in layers:
        weight_name = _weight_name(modules[name])
        if weight_name is not None:
            weights[name] = getattr(modules[name], weight_name)
    grads: dict[str, torch.Tensor | None] = {}
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        targets = [name for name, w in weights.items() if w.requires_grad]
        if targets:
            results = torch.autograd.grad(loss, [weights[n] for n in targets], allow_unused=True)
            grads = dict(zip(targets, results, strict=True))

    stats = []
    for param_name, param in model.named_parameters(recurse=False):  # e.g. a position embedding on the root
        stats.append(
            LayerStats(
                layer=param_name,
                kind="Parameter",
                activation="-",
                weight_std=param.detach().float().std().item() if param.numel() > 1 else math.nan,
                act_mean=math.nan,
                act_std=math.nan,
                grad_std=math.nan,
                dead_frac=math.nan,
            )
        )
    for name in layers:
        module = modules[name]
        out = outputs.get(name)
        act = activations.get(name)
        weight = weights.get(name)
        grad = grads.get(name)
        dead = math.nan
        if out is not None and act is not None and act.name in _DEAD_CAPABLE and out.dim() >= 2:
            unit = _unit_dim(module, out)
            alive = (out > 0).movedim(unit, -1).reshape(-1, out.shape[unit]).any(dim=0)
            dead = 1.0 - alive.float().mean().item()
        stats.append(
            LayerStats(
                layer=name,
                kind=type(module).__name__,
                activation=repr(act) if act is not None else "untraced" if name in untraced else "-",
                weight_std=weight.detach().float().std().item()
                if weight is not None and weight.numel() > 1
                else math.nan,
                act_mean=out.float().mean().item() if out is not None else math.nan,
                act_std=out.float().std().item() if out is not None and out.numel() > 1 else math.nan,
                grad_std=grad.float().std().item() if grad is not None and grad.numel() > 1 else math.nan,
                dead_frac=dead,
            )
        )
    return stats


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def format_table(stats: Sequence[LayerStats], notes: Mapping[str, str] | None = None) -> str:
    """A fixed-width table, one row per layer; names are never cut (the column is as wide as the longest name).

    Values that do not exist are shown as ``-`` (no output for a layer ``forward`` never calls, such as
    ``MultiheadAttention.out_proj``; no dead fraction for a non-ReLU layer). ``notes`` (layer → text) are listed under
    the table.
    """
    columns = ("w_std", "out_mean", "out_std", "grad_std")
    name_width = max([len("layer"), *(len(s.layer) for s in stats)])
    kind_width = max([len("type"), *(len(s.kind) for s in stats)])
    act_width = max([len("act"), *(len(s.activation) for s in stats)])
    header = (
        f"{'layer':<{name_width}} {'type':<{kind_width}} {'act':<{act_width}} "
        + " ".join(f"{c:>9}" for c in columns)
        + f" {'dead':>6}"
    )
    rows = [header, "-" * len(header)]
    for s in stats:
        dead = "-" if math.isnan(s.dead_frac) else f"{s.dead_frac:.0%}"
        values = " ".join(f"{_number(v):>9}" for v in (s.weight_std, s.act_mean, s.act_std, s.grad_std))
        rows.append(f"{s.layer:<{name_width}} {s.kind:<{kind_width}} {s.activation:<{act_width}} {values} {dead:>6}")
    for layer, note in (notes or {}).items():
        rows.append(f"* {layer}: {note}")
    return "\n".join(rows)


def signal_problems(stats: Sequence[LayerStats], vanish_below: float | None, explode_above: float | None) -> list[str]:
    """Layers whose output std left ``[vanish_below, explode_above]``, as human-readable lines."""
    problems = []
    for s in stats:
        if math.isnan(s.act_std):
            continue
        if vanish_below is not None and s.act_std < vanish_below:
            problems.append(f"{s.layer}: output std {s.act_std:.3g} < {vanish_below:g} (signal vanishes)")
        if explode_above is not None and s.act_std > explode_above:
            problems.append(f"{s.layer}: output std {s.act_std:.3g} > {explode_above:g} (signal explodes)")
    return problems
