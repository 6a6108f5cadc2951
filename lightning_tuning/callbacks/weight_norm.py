r"""
Weight normalisation
====================

Reparametrise selected layers as ``w = g * v / ||v||`` (Salimans & Kingma, 2016) before the optimizer is created.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm
from typing_extensions import override

from lightning_tuning.init.rules import InitRule, describe_modules


class WeightNorm(Callback):
    r"""Apply :func:`torch.nn.utils.parametrizations.weight_norm` to the selected modules.

    The layer's ``weight`` becomes ``g * v / ||v||`` with trainable ``parametrizations.weight.original0`` (g) and
    ``original1`` (v); what the layer computes is unchanged at that moment. It acts in ``setup`` (before
    ``configure_model``) for modules that exist then, and right after ``configure_model`` for modules built there, so
    it is always done before ``configure_optimizers`` runs (inside ``strategy.setup``) and before DDP wraps the model:
    the optimizer and DDP see ``g`` and ``v``. It runs for every stage, so ``validate``/``test``/``predict`` with a
    weight-normalised checkpoint load its ``parametrizations.*`` keys. To load such a checkpoint without a Trainer,
    call :meth:`apply` on the module first. Applying twice is harmless (already normalised layers are skipped).
    Combine with :class:`~lightning_tuning.WeightInit` to initialise: it writes through the parametrisation (``g`` and
    ``v`` both change), which plain ``nn.init`` on ``layer.weight`` would silently not do.

    Args:
        modules: Class names or aliases (``linear``, ``conv``, ...) of the layers to normalise (as in WeightInit rules).
        name: Globs on qualified module names; ``None``: any name.
        exclude: Globs on qualified module names to leave alone (e.g. the output layer).
        dim: The dimension ``||v||`` is *not* taken over (0: one norm per output unit, torch's default).

    Raises:
        MisconfigurationException: If ``modules`` names nothing (in ``__init__``), or no module matches (in ``setup``;
            the message lists the model's modules).

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[WeightNorm(modules=["Linear"], exclude=["head"])])
    """

    def __init__(
        self,
        modules: Sequence[str] = ("linear", "conv"),
        name: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        dim: int | None = 0,
    ) -> None:
        if isinstance(modules, str):
            modules = [modules]
        if not modules:
            raise MisconfigurationException("WeightNorm(modules=[]) selects nothing; name layer types, e.g. [Linear].")
        self.modules = list(modules)
        self.name = [name] if isinstance(name, str) else list(name or [])
        self.exclude = [exclude] if isinstance(exclude, str) else list(exclude or [])
        self.dim = dim
        self._selector = InitRule(modules=tuple(self.modules), name=tuple(self.name), weight="keep")
        self._wrapped: Callable[[], None] | None = None

    def selected(self, model: nn.Module) -> list[str]:
        """Qualified names of the modules this callback normalises (already normalised ones included)."""
        names = []
        for module_name, module in model.named_modules():
            if ".parametrizations." in f".{module_name}.":
                continue
            if any(fnmatch.fnmatchcase(module_name, pattern) for pattern in self.exclude):
                continue
            if self._selector.matches_module(module_name, module) and _has_weight(module):
                names.append(module_name)
        return names

    def apply(self, model: nn.Module) -> list[str]:
        """Normalise the selected modules of ``model`` (e.g. before ``load_state_dict`` of a saved checkpoint).

        Returns:
            The names of the modules that were newly normalised.
        """
        modules = dict(model.named_modules())
        done = []
        for module_name in self.selected(model):
            module = modules[module_name]
            if parametrize.is_parametrized(module, "weight"):
                continue
            weight_norm(module, name="weight", dim=self.dim)
            done.append(module_name)
        return done

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.apply(pl_module)
        if is_overridden("configure_model", pl_module):
            # modules built in configure_model exist only after it; normalise them before strategy.setup
            original = pl_module.configure_model

            def configure_model_then_normalise() -> None:
                original()
                self._finish(pl_module)

            pl_module.configure_model = configure_model_then_normalise  # type: ignore[method-assign]
            self._wrapped = configure_model_then_normalise
        else:
            self._finish(pl_module)

    def _finish(self, pl_module: pl.LightningModule) -> None:
        self.apply(pl_module)
        selected = self.selected(pl_module)
        if not selected:
            raise MisconfigurationException(
                f"WeightNorm(modules={self.modules}, name={self.name or None}, exclude={self.exclude or None})"
                f" matches no layer with a weight in {type(pl_module).__name__}. Modules with parameters: "
                f"{describe_modules(pl_module)}."
            )
        rank_zero_info(f"WeightNorm: {len(selected)} layers are weight-normalised: {', '.join(selected)}.")

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._unwrap(pl_module)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._unwrap(pl_module)

    def _unwrap(self, pl_module: pl.LightningModule) -> None:
        if self._wrapped is not None and pl_module.__dict__.get("configure_model") is self._wrapped:
            del pl_module.configure_model
        self._wrapped = None


def _has_weight(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") or isinstance(getattr(module, "weight", None), nn.Parameter)
