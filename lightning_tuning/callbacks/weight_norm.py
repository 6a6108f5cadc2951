r"""
Weight normalisation
====================

Reparametrise selected layers as ``w = g * v / ||v||`` (Salimans & Kingma, 2016) before the optimizer is created.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm
from typing_extensions import override

from lightning_tuning.callbacks._init_probe import (
    probe_guard,
    refuse_unsupported_strategy,
    require_probe_input,
    run_probe,
)
from lightning_tuning.init.rules import InitRule, describe_modules

_G = "parametrizations.weight.original0"
_V = "parametrizations.weight.original1"


class WeightNorm(Callback):
    r"""Apply :func:`torch.nn.utils.parametrizations.weight_norm` to the selected modules.

    The layer's ``weight`` becomes ``g * v / ||v||`` with trainable ``parametrizations.weight.original0`` (g) and
    ``original1`` (v); what the layer computes is unchanged at that moment.

    When and where (so every piece of user code sees names it knows):

    * It acts in ``setup`` of a ``fit`` (before ``configure_model``) for modules that exist then, and right after
      ``configure_model`` for modules built there: before DDP wraps the model, so DDP syncs ``g`` and ``v``.
    * ``configure_optimizers`` runs while the layers show their plain ``weight`` (the reparametrisation is lifted for
      that call and put back with the very same ``g`` and ``v`` tensors), so a module that sorts parameters by name
      (minGPT's decay / no-decay sets) keeps working; ``g`` and ``v`` then take the place of ``weight`` in the same
      param group, with its hyperparameters (weight decay included).
    * ``state_dict()`` of a normalised layer holds its plain ``weight`` (``g * v / ||v||``), never the
      ``parametrizations.*`` keys, so ``Model.load_from_checkpoint(path)`` and ``load_state_dict`` on a plain model
      work without this callback; loading a plain ``weight`` into a normalised layer sets ``g = ||w||``, ``v = w``.
      The exact ``g`` and ``v`` travel in this callback's checkpoint state and are put back on
      ``Trainer.fit(ckpt_path=...)``, so a resumed run continues bit for bit.

    Applying twice is harmless (already normalised layers are skipped). Combine with
    :class:`~lightning_tuning.WeightInit` to initialise: it writes through the parametrisation (``g`` and ``v`` both
    change), which plain ``nn.init`` on ``layer.weight`` would silently not do. Not supported under DeepSpeed; under
    FSDP ``configure_optimizers`` sees the parametrised names.

    Args:
        modules: Class names or aliases (``linear``, ``conv``, ...) of the layers to normalise (as in WeightInit rules).
        name: Globs on qualified module names; ``None``: any name.
        exclude: Globs on qualified module names to leave alone.
        exclude_output: Leave the output layer(s) alone: the layers whose output reaches ``forward``'s result without
            passing another layer, found by tracing ``forward`` on the first training batch (or
            ``example_input_array``).
        dim: The dimension ``||v||`` is *not* taken over (0: one norm per output unit, torch's default).

    Raises:
        MisconfigurationException: If ``modules`` names nothing (in ``__init__``), or no module matches, or the output
            layer cannot be found (in ``setup``; the message lists the model's modules or what was tried).

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[WeightNorm(modules=["Linear"], exclude_output=True)])
    """

    def __init__(
        self,
        modules: Sequence[str] = ("linear", "conv"),
        name: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        exclude_output: bool = False,
        dim: int | None = 0,
    ) -> None:
        if isinstance(modules, str):
            modules = [modules]
        if not modules:
            raise MisconfigurationException("WeightNorm(modules=[]) selects nothing; name layer types, e.g. [Linear].")
        if not isinstance(exclude_output, bool):
            raise MisconfigurationException(f"WeightNorm(exclude_output={exclude_output!r}): must be true or false.")
        self.modules = list(modules)
        self.name = [name] if isinstance(name, str) else list(name or [])
        self.exclude = [exclude] if isinstance(exclude, str) else list(exclude or [])
        self.exclude_output = exclude_output
        self.dim = dim
        self.output_layers: list[str] = []
        self._selector = InitRule(modules=tuple(self.modules), name=tuple(self.name), weight="keep")
        self._patched: dict[str, Callable[..., Any]] = {}
        self._module: pl.LightningModule | None = None
        self._pending_originals: dict[str, dict[str, torch.Tensor]] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            modules=self.modules, name=self.name, exclude=self.exclude, exclude_output=self.exclude_output
        )

    def selected(self, model: nn.Module) -> list[str]:
        """Qualified names of the modules this callback normalises (already normalised ones included)."""
        excluded = [*self.exclude, *self.output_layers]
        names = []
        for module_name, module in model.named_modules():
            if ".parametrizations." in f".{module_name}.":
                continue
            if any(fnmatch.fnmatchcase(module_name, pattern) for pattern in excluded):
                continue
            if self._selector.matches_module(module_name, module) and _has_weight(module):
                names.append(module_name)
        return names

    def apply(self, model: nn.Module) -> list[str]:
        """Normalise the selected modules of ``model`` (the output layer only when already found by a fit).

        Returns:
            The names of the modules that were newly normalised.
        """
        modules = dict(model.named_modules())
        done = []
        for module_name in self.selected(model):
            module = modules[module_name]
            if parametrize.is_parametrized(module, "weight"):
                continue
            normalise(module, self.dim)
            done.append(module_name)
        return done

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return  # checkpoints hold plain weights: nothing to do to evaluate or predict
        refuse_unsupported_strategy(trainer, "WeightNorm")
        self._module = pl_module
        if is_overridden("configure_optimizers", pl_module) and "fsdp" not in type(trainer.strategy).__name__.lower():
            self._patch(pl_module, "configure_optimizers", self._configure_optimizers_with_plain_names(pl_module))
        if is_overridden("configure_model", pl_module):
            original = pl_module.configure_model

            def configure_model_then_normalise() -> None:
                original()
                self._finish(trainer, pl_module)

            self._patch(pl_module, "configure_model", configure_model_then_normalise)
        else:
            self._finish(trainer, pl_module)

    def _patch(self, pl_module: pl.LightningModule, attr: str, fn: Callable[..., Any]) -> None:
        setattr(pl_module, attr, fn)
        self._patched[attr] = fn

    def _unpatch(self, pl_module: pl.LightningModule, attrs: Sequence[str]) -> None:
        for attr in attrs:
            fn = self._patched.pop(attr, None)
            if fn is not None and pl_module.__dict__.get(attr) is fn:
                delattr(pl_module, attr)

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.exclude_output and not self.output_layers:
            self.output_layers = _find_output_layers(trainer, pl_module)
            rank_zero_info(f"WeightNorm: output layer(s) left alone: {', '.join(self.output_layers)}.")
        self.apply(pl_module)
        selected = self.selected(pl_module)
        if not selected:
            raise MisconfigurationException(
                f"WeightNorm(modules={self.modules}, name={self.name or None}, exclude={self.exclude or None},"
                f" exclude_output={self.exclude_output}) matches no layer with a weight in {type(pl_module).__name__}."
                f" Modules with parameters: {describe_modules(pl_module)}."
            )
        rank_zero_info(f"WeightNorm: {len(selected)} layers are weight-normalised: {', '.join(selected)}.")

    def _configure_optimizers_with_plain_names(self, pl_module: pl.LightningModule) -> Callable[[], Any]:
        original = pl_module.configure_optimizers

        def configure_optimizers() -> Any:
            modules = dict(pl_module.named_modules())
            lifted: dict[str, tuple[nn.Parameter, nn.Parameter, nn.Parameter]] = {}
            for module_name in self.selected(pl_module):
                module = modules[module_name]
                if not parametrize.is_parametrized(module, "weight"):
                    continue
                g, v = module.parametrizations.weight.original0, module.parametrizations.weight.original1
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
                lifted[module_name] = (module.weight, g, v)
            try:
                result = original()
            finally:
                for module_name, (_, g, v) in lifted.items():
                    module = modules[module_name]
                    normalise(module, self.dim)
                    module.parametrizations.weight.original0 = g  # the very tensors DDP and the hooks know
                    module.parametrizations.weight.original1 = v
            swap = {id(plain): [g, v] for plain, g, v in lifted.values()}
            for optimizer in _optimizers_in(result):
                for group in optimizer.param_groups:
                    params = group["params"]
                    if any(id(p) in swap for p in params):
                        params[:] = [q for p in params for q in swap.get(id(p), [p])]
            return result

        return configure_optimizers

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._unpatch(pl_module, ["configure_model", "configure_optimizers"])

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._unpatch(pl_module, list(self._patched))

    @override
    def state_dict(self) -> dict[str, Any]:
        """The exact ``g`` and ``v`` of every normalised layer (the model's own state holds the plain weight)."""
        originals: dict[str, dict[str, torch.Tensor]] = {}
        if self._module is not None:
            for module_name, module in self._module.named_modules():
                if parametrize.is_parametrized(module, "weight") and hasattr(module, "_lt_weight_norm_dim"):
                    plist = module.parametrizations.weight
                    originals[module_name] = {
                        "g": plist.original0.detach().cpu().clone(),
                        "v": plist.original1.detach().cpu().clone(),
                    }
        return {"output_layers": list(self.output_layers), "originals": originals}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Put the exact ``g`` and ``v`` back (Lightning restores callbacks right after the model weights)."""
        self._pending_originals = dict(state_dict.get("originals", {}))
        if self._module is None:
            return
        modules = dict(self._module.named_modules())
        with torch.no_grad():
            for module_name, tensors in self._pending_originals.items():
                module = modules.get(module_name)
                if module is None or not parametrize.is_parametrized(module, "weight"):
                    continue
                plist = module.parametrizations.weight
                if plist.original0.shape == tensors["g"].shape and plist.original1.shape == tensors["v"].shape:
                    plist.original0.copy_(tensors["g"])
                    plist.original1.copy_(tensors["v"])
        self._pending_originals = {}


def normalise(module: nn.Module, dim: int | None = 0) -> None:
    """``weight_norm`` on ``module.weight``, with ``state_dict`` hooks that show and accept the plain ``weight``."""
    weight_norm(module, name="weight", dim=dim if dim is not None else -1)  # torch reads None as -1 too
    if not hasattr(module, "_lt_weight_norm_dim"):
        module.register_state_dict_post_hook(_plain_weight_in_state_dict)
        module.register_load_state_dict_pre_hook(_split_plain_weight_on_load)
        setattr(module, "_lt_weight_norm_dim", dim)  # marks the hooks as installed  # noqa: B010


def _plain_weight_in_state_dict(module: nn.Module, state_dict: dict[str, Any], prefix: str, _meta: Any) -> None:
    if prefix + _G not in state_dict or prefix + _V not in state_dict:
        return
    g, v = state_dict.pop(prefix + _G), state_dict.pop(prefix + _V)
    dim = getattr(module, "_lt_weight_norm_dim", 0)
    with torch.no_grad():
        weight = torch._weight_norm(v.detach(), g.detach(), dim if dim is not None else -1)
    state_dict[prefix + "weight"] = weight.to(v.dtype)


def _split_plain_weight_on_load(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    key = prefix + "weight"
    if key not in state_dict or not parametrize.is_parametrized(module, "weight"):
        return
    weight = state_dict.pop(key)
    dim = getattr(module, "_lt_weight_norm_dim", 0)
    with torch.no_grad():
        g = torch.norm_except_dim(weight, 2, dim if dim is not None else -1)
    state_dict[prefix + _G] = g
    state_dict[prefix + _V] = weight


def _optimizers_in(result: Any) -> list[torch.optim.Optimizer]:
    """Every optimizer in what ``configure_optimizers`` may return (one, a list/tuple, dicts, nested)."""
    if isinstance(result, torch.optim.Optimizer):
        return [result]
    if isinstance(result, Mapping):
        return [o for value in result.values() for o in _optimizers_in(value)]
    if isinstance(result, (list, tuple)):
        return [o for value in result for o in _optimizers_in(value)]
    return []


def _find_output_layers(trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[str]:
    batch, example = require_probe_input(
        trainer, pl_module, "WeightNorm(exclude_output=True)", "a forward pass to find the output layer",
        device=pl_module.device,
    )  # fmt: skip
    with probe_guard(pl_module):
        probe = run_probe(pl_module, batch, example)
    if not probe.trace.output_layers:
        raise MisconfigurationException(
            "WeightNorm(exclude_output=True) needs a traced call of `forward` to find the output layer, but none"
            f" worked. {probe.describe_failure()}"
        )
    return list(probe.trace.output_layers)


def _has_weight(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") or isinstance(getattr(module, "weight", None), nn.Parameter)
