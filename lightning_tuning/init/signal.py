"""Keep the forward signal of an ``auto``-gain chain within a band of its first layer's scale.

A gain ``g`` derived for an activation ``f`` (``1 / sqrt(E[f(x)^2])``) maps a pre-activation of unit variance to a
pre-activation of unit variance *on average over random weights*. For a finite width, each layer's realised weights
move the scale by a few percent; for ReLU and LeakyReLU that is a neutral random walk, for tanh it is pulled back, but
for GELU, SiLU, Mish and other non-homogeneous activations ``E[f(s x)^2] / s^2`` grows with ``s``, so the fixed point
is unstable (``d log std_out / d log std_in`` = 1.14 for GELU, 1.17 for SiLU at std 1) and the few percent are
amplified layer after layer: 20 SiLU layers of width 256 end at 1.8-6x the input's std, whatever fixed gain is chosen.

:func:`correct_drift` measures the realised signal on a traced forward and rescales, in forward order, the weight of
each layer whose output std has left ``[1 / band, band]`` times the std of its chain's first layer (a layer fed
through activations only by another layer of the chain) back to that std. Layers within the band keep the
closed-form gain exactly, so shallow nets are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lightning_tuning.init.apply import effective_tensor, write_tensor
from lightning_tuning.init.gain import Activation, has_unstable_fixed_point
from lightning_tuning.init.rules import module_table
from lightning_tuning.init.tracing import _tensors

#: A chain's signal may drift to this factor (or its inverse) of the chain's first layer before it is corrected.
DRIFT_BAND = 1.5


def chain_roots(layers: Sequence[str], sources: Mapping[str, str | None]) -> dict[str, str]:
    """Each of ``layers`` → the first layer of its chain (itself when its input is not another layer's output).

    A chain follows ``sources`` (layer → the layer that fed it through activations only) back while the source is
    one of ``layers``; the first source outside ``layers`` (a layer with a gain the config fixed) is the chain's
    first layer, its scale the reference.
    """
    candidates = set(layers)
    roots: dict[str, str] = {}
    for layer in layers:
        current, seen = layer, {layer}
        while True:
            source = sources.get(current)
            if source is None or source in seen:
                break
            current = source
            seen.add(source)
            if source not in candidates:
                break
        roots[layer] = current
    return roots


def drift_checked(layers: Sequence[str], input_activation: Mapping[str, Activation]) -> list[str]:
    """The ``layers`` (in their order) whose input went through an activation with an unstable fixed point: the
    ones :func:`correct_drift` looks after. ReLU, LeakyReLU, tanh and linear inputs keep torch's gains exactly."""
    return [
        layer for layer in layers if layer in input_activation and has_unstable_fixed_point(input_activation[layer])
    ]


def moments(tensor: torch.Tensor) -> torch.Tensor:
    """``[sum, sum of squares, count]`` of ``tensor`` in float64: summed across processes, they give the variance of
    all the processes' values together (:func:`variance_of`), whatever each one's batch size."""
    values = tensor.detach().to(torch.float64)
    return torch.stack([values.sum(), values.pow(2).sum(), torch.tensor(float(values.numel()), dtype=torch.float64)])


def variance_of(sums: torch.Tensor) -> torch.Tensor:
    """The variance from (a ``[..., 3]`` tensor of) :func:`moments`, summed over processes or not."""
    mean = sums[..., 0] / sums[..., 2]
    return (sums[..., 1] / sums[..., 2] - mean * mean).clamp_min(0)


def measure_variances(
    model: nn.Module,
    layers: Sequence[str],
    run_forward: Callable[[], Any],
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Output variance of each of ``layers`` (first call) on one ``run_forward()``, pooled across processes by
    ``reduce_sum`` when given. Layers that did not run or return no floating-point tensor are left out."""
    modules = module_table(model)
    found: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            tensors = _tensors(output)
            if name not in found and tensors and tensors[0].is_floating_point() and tensors[0].numel() > 1:
                found[name] = moments(tensors[0])

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in layers]
    try:
        with torch.no_grad():
            run_forward()
    finally:
        for handle in handles:
            handle.remove()
    names = [name for name in layers if name in found]
    if not names:
        return {}
    sums = torch.stack([found[name] for name in names])
    if reduce_sum is not None:
        sums = reduce_sum(sums)
    return {name: float(value) for name, value in zip(names, variance_of(sums).tolist(), strict=True)}


def correct_drift(
    model: nn.Module,
    layers: Sequence[str],
    sources: Mapping[str, str | None],
    run_forward: Callable[[], Any],
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    band: float = DRIFT_BAND,
) -> dict[str, float]:
    """Rescale the weights of ``layers`` whose output std left ``[1/band, band]`` x their chain's first layer's.

    All or nothing: if a forward fails, the weights rescaled so far are put back before the error propagates.

    Args:
        model: The model ``run_forward`` runs.
        layers: The layers whose weight may be rescaled (see :func:`drift_checked`), in forward order.
        sources: Layer → the layer that fed it through activations only (:attr:`TraceResult.input_source`).
        run_forward: Runs the model's forward once (the traced call); called once, plus once per correction.
        reduce_sum: Sums a tensor across processes, so every rank makes the same corrections.
        band: The allowed factor; ``> 1``.

    Returns:
        Layer → the factor its weight was multiplied by, for the layers corrected.
    """
    if band <= 1:
        raise ValueError(f"band={band!r} must be > 1.")
    roots = chain_roots(layers, sources)
    chained = [layer for layer in layers if roots[layer] != layer]
    if not chained:
        return {}
    measured = list(dict.fromkeys([*(roots[layer] for layer in chained), *chained]))
    modules = module_table(model)
    originals: dict[str, torch.Tensor] = {}
    corrections: dict[str, float] = {}
    try:
        for _ in range(len(chained)):
            variances = measure_variances(model, measured, run_forward, reduce_sum)
            drifted = _first_drifted(chained, roots, variances, band)
            if drifted is None:
                break
            layer, ratio = drifted
            module = modules[layer]
            weight = effective_tensor(module, "weight").detach()
            originals.setdefault(layer, weight.clone())
            write_tensor(module, "weight", weight / ratio)
            corrections[layer] = corrections.get(layer, 1.0) / ratio
    except BaseException:
        for layer, weight in originals.items():
            write_tensor(modules[layer], "weight", weight)
        raise
    return corrections


def _first_drifted(
    chained: Sequence[str], roots: Mapping[str, str], variances: Mapping[str, float], band: float
) -> tuple[str, float] | None:
    """The first layer (in forward order) whose std ratio to its chain's first layer is outside the band, and that
    ratio; the layers after it see a different signal once it is corrected, so one at a time."""
    for layer in chained:
        reference, own = variances.get(roots[layer]), variances.get(layer)
        if not reference or not own or not math.isfinite(reference) or not math.isfinite(own):
            continue
        ratio = math.sqrt(own / reference)
        if not 1 / band <= ratio <= band:
            return layer, ratio
    return None
