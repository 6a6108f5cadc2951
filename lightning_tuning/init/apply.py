"""Apply a resolved plan to a model: seeded per parameter, parametrisation-aware, and checked to have taken effect."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from lightning_tuning.init.gain import Activation
from lightning_tuning.init.rules import PlanEntry, module_table
from lightning_tuning.init.schemes import sample
from lightning_tuning.init.seeding import generator_for


class InitHadNoEffectError(RuntimeError):
    """Writing the new values did not change what the module computes with (meta tensor, empty-init context...)."""


def effective_tensor(module: nn.Module, param: str) -> torch.Tensor:
    """What the module computes with: the parameter, or the recomputed tensor of a parametrised one."""
    return getattr(module, param)


def write_tensor(module: nn.Module, param: str, value: torch.Tensor) -> None:
    """Set ``module.<param>`` to ``value`` in place, so optimizers that already hold the parameter keep working.

    For a parametrised tensor (``weight_norm``), plain ``nn.init`` on ``module.weight`` writes into a temporary and is
    silently lost (pytorch#180968); assigning goes through ``right_inverse`` and updates the originals (g, v) in place.
    """
    with torch.no_grad():
        if parametrize.is_parametrized(module, param):
            target = effective_tensor(module, param)
            setattr(module, param, value.to(device=target.device, dtype=target.dtype))
        else:
            tensor = getattr(module, param)
            if tensor.is_meta:
                raise InitHadNoEffectError(
                    f"Parameter {param!r} of {type(module).__name__} is on the meta device; materialise it first."
                )
            tensor.copy_(value.to(device=tensor.device, dtype=tensor.dtype))


def _check_effect(module: nn.Module, entry: PlanEntry, expected: torch.Tensor) -> None:
    actual = effective_tensor(module, entry.param).detach().float().cpu()
    tol = 1e-5 * (1.0 + expected.abs().max().item()) if expected.numel() else 0.0
    if actual.shape != expected.shape or not torch.allclose(actual, expected, rtol=1e-4, atol=tol):
        raise InitHadNoEffectError(
            f"Initialising {entry.qualified_name!r} with {entry.scheme!r} had no effect: the module still computes with"
            " other values. This happens under `trainer.init_module(empty_init=True)` patches, meta tensors or custom"
            " parametrizations without `right_inverse`. Initialise it another way or exclude it."
        )


def _reset_with_seed(module: nn.Module, module_name: str, params: list[str], seed: int) -> None:
    """``module.reset_parameters()`` drawn from a seeded RNG; parameters not listed in ``params`` are put back."""
    _check_default(module, module_name, params)
    others = {
        name: effective_tensor(module, name).detach().clone() for name in _own_names(module) if name not in params
    }
    devices = [torch.device("cuda", torch.cuda.current_device())] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(generator_for(seed, module_name).initial_seed())
        getattr(module, "reset_parameters")()  # noqa: B009
    for name, value in others.items():
        write_tensor(module, name, value)


def _own_names(module: nn.Module) -> list[str]:
    from lightning_tuning.init.rules import module_param_names

    return module_param_names(module)


def _check_default(module: nn.Module, module_name: str, params: list[str]) -> None:
    if not hasattr(module, "reset_parameters"):
        raise ValueError(
            f"Scheme 'default' needs `reset_parameters()`, which {module_name!r} ({type(module).__name__}) lacks."
            " Name an explicit scheme for it."
        )
    if any(parametrize.is_parametrized(module, p) for p in params):
        raise ValueError(
            f"Scheme 'default' cannot re-initialise the parametrised weight of {module_name!r}: its reset_parameters()"
            " writes into a recomputed tensor and is lost. Name an explicit scheme (e.g. kaiming_uniform with a=2.236)."
        )


def _check_writable(module: nn.Module, entry: PlanEntry) -> None:
    if parametrize.is_parametrized(module, entry.param):
        return
    if getattr(module, entry.param).is_meta:
        raise InitHadNoEffectError(
            f"Parameter {entry.qualified_name!r} ({type(module).__name__}) is on the meta device; materialise it first"
            " (under FSDP the init runs in `on_fit_start`, after the strategy has materialised the shards)."
        )


def apply_plan(
    model: nn.Module,
    entries: list[PlanEntry],
    seed: int,
    activations: Mapping[str, Activation] | None = None,
) -> None:
    """Initialise every planned parameter of ``model``, all or nothing.

    Each tensor is sampled on the CPU in float32 from a generator seeded by ``(seed, qualified parameter name)``, then
    copied to the parameter's device and dtype, so the result is the same on every rank, device and run.

    Every entry is checked and every new tensor drawn *before* the first one is written; if a write then fails (or has
    no effect), every parameter already written is put back, so an error never leaves the model half-initialised.

    Raises:
        InitHadNoEffectError: If a written tensor is not what the module then computes with.
        ValueError: For a scheme that cannot apply to that tensor (e.g. a fan-based scheme on a bias).
    """
    modules = module_table(model)
    activations = activations or {}
    defaults: dict[str, list[str]] = {}
    for entry in entries:
        if entry.scheme == "default":
            defaults.setdefault(entry.module, []).append(entry.param)
    # 1. check everything and draw every tensor; nothing is written yet
    for module_name, params in defaults.items():
        _check_default(modules[module_name], module_name, params)
    values: list[tuple[PlanEntry, torch.Tensor]] = []
    for entry in entries:
        module = modules[entry.module]
        _check_writable(module, entry)
        if entry.scheme in ("default", "keep"):
            continue
        shape = tuple(effective_tensor(module, entry.param).shape)
        try:
            value = sample(
                entry.scheme,
                shape,
                entry.args,
                generator_for(seed, entry.qualified_name),
                activations.get(entry.module),
            )
        except ValueError as err:
            raise ValueError(f"Cannot initialise {entry.qualified_name!r} (rule {entry.rule}): {err}") from None
        values.append((entry, value))
    # 2. write, keeping what was there to put it back on failure
    backup = {
        (e.module, e.param): effective_tensor(modules[e.module], e.param).detach().clone()
        for e in entries
        if e.scheme != "keep"
    }
    try:
        for module_name, params in defaults.items():
            _reset_with_seed(modules[module_name], module_name, params, seed)
        for entry, value in values:
            module = modules[entry.module]
            write_tensor(module, entry.param, value)
            _check_effect(module, entry, value)
    except BaseException:
        for (module_name, param), old in backup.items():
            with contextlib.suppress(Exception):
                write_tensor(modules[module_name], param, old)
        raise


def parameter_checksum(model: nn.Module) -> torch.Tensor:
    """A float64 fingerprint of all parameters (order- and position-sensitive), to compare ranks."""
    total = torch.zeros((), dtype=torch.float64)
    for i, (_, p) in enumerate(sorted(model.named_parameters(), key=lambda item: item[0])):
        flat = p.detach().flatten().to(torch.float64).cpu()
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64).remainder_(97).add_(1)
        total += (i + 1) * (flat * weights).sum()
    return total
