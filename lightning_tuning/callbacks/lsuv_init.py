r"""
LSUV initialisation
===================

Layer-sequential unit-variance init (Mishkin & Matas, "All you need is a good init", ICLR 2016) on a real batch.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import nn
from typing_extensions import override

from lightning_tuning.callbacks._init_probe import (
    Probe,
    first_train_batch,
    is_fsdp,
    is_resuming,
    noise_if_constant,
    probe_guard,
    refuse_unsupported_strategy,
    run_probe,
    shared_seed,
)
from lightning_tuning.callbacks._init_report import check_thresholds, report_and_check
from lightning_tuning.callbacks.weight_init import verify_same_on_all_ranks
from lightning_tuning.init.apply import apply_plan, effective_tensor, write_tensor
from lightning_tuning.init.rules import InitRule, build_plan, describe_modules, module_table
from lightning_tuning.init.signal import moments, variance_of


class _StopForward(Exception):
    """Raised by a hook once the measured layer has produced its output: the rest of the forward is not needed."""


class LSUVInit(Callback):
    r"""Orthogonal pre-init, then rescale each selected layer, in execution order, to unit output std on a real batch.

    For each layer (in the order the forward pass runs them) the first training batch is passed through the model up
    to that layer, and the layer's weight is divided by its output std until ``|std - 1| <= tol`` or ``max_iters``
    rescalings were made. Under DDP each rank uses its own batch and the sums (Σx, Σx², n) are all-reduced, so every
    rank applies the same scale; the pre-init is drawn from per-parameter generators, so ranks agree (checked by a
    checksum). The batch comes from a fresh copy of the training dataloader; the global RNG states, the train/eval
    flag of every submodule and the buffers (BatchNorm statistics) are restored afterwards. The model is measured in
    train mode, with one fixed dropout mask.

    The batch is fed to the module's ``forward`` the way :mod:`~lightning_tuning.callbacks._init_probe` finds (``x``
    of ``(x, y)``, the batch unpacked, a dict as keywords...), else ``example_input_array`` is used (replaced by
    standard-normal noise of its shape when it is constant, as a GAN's all-zero latent example is). Only layers that
    call reaches are pre-initialised and rescaled; the others (``MultiheadAttention.out_proj``, a GAN's
    discriminator) are left as they are, with a warning.

    When: ``on_fit_start`` (after ``configure_model``, after a DDP checkpoint restore, before the first step); skipped
    when resuming from a checkpoint. Put it after :class:`~lightning_tuning.WeightInit` and
    :class:`~lightning_tuning.WeightNorm` in ``callbacks`` if they are combined (a weight-normalised layer is rescaled
    through its parametrisation: ``g`` changes).

    Args:
        modules: Layer types (class names or aliases such as ``linear``, ``conv``) to process.
        name: Globs on qualified module names to restrict to; ``None``: any.
        exclude: Globs on qualified module names to leave alone (e.g. a pretrained backbone).
        exclude_output: Leave the output layer(s) alone: the layers whose output reaches ``forward``'s result without
            passing another layer, found from the traced call (so ``head.2``, ``decoder.2`` or ``net.6`` alike).
        tol: Tolerance on the output std: a layer is done when ``|std - 1| <= tol``.
        max_iters: Maximum rescalings per layer.
        orthogonal_preinit: Start from orthogonal weights (the paper's recipe); ``False`` keeps the current weights.
        bias: ``zeros`` (the paper's recipe) or ``keep``.
        seed: Seed of the orthogonal pre-init generators (``None``: rank 0's ``torch.initial_seed()``, broadcast).
        strict: Raise (instead of warn) when a layer does not reach the tolerance in ``max_iters``.
        report: Print and log the per-layer init report afterwards.
        vanish_below: Fail before training when a layer's output std at init is below this.
        explode_above: Fail before training when a layer's output std at init is above this.

    Raises:
        MisconfigurationException: Bad arguments (``__init__``); no training dataloader, no matching layer, or a layer
            that misses the tolerance with ``strict=True`` (``on_fit_start``).

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[LSUVInit(tol=0.05, exclude=["head"])])
    """

    def __init__(
        self,
        modules: Sequence[str] = ("linear", "conv"),
        name: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        exclude_output: bool = False,
        tol: float = 0.1,
        max_iters: int = 10,
        orthogonal_preinit: bool = True,
        bias: Literal["zeros", "keep"] = "zeros",
        seed: int | None = None,
        strict: bool = False,
        report: bool = False,
        vanish_below: float | None = None,
        explode_above: float | None = None,
    ) -> None:
        if not 0 < tol < 1:
            raise MisconfigurationException(f"LSUVInit(tol={tol!r}): must be in (0, 1), e.g. 0.1.")
        if max_iters < 1:
            raise MisconfigurationException(f"LSUVInit(max_iters={max_iters!r}): must be a positive integer.")
        if bias not in ("zeros", "keep"):
            raise MisconfigurationException(f"LSUVInit(bias={bias!r}): allowed values are 'zeros' and 'keep'.")
        check_thresholds(vanish_below, explode_above, "LSUVInit")
        if isinstance(modules, str):
            modules = [modules]
        self.modules = list(modules)
        self.name = [name] if isinstance(name, str) else list(name or [])
        self.exclude = [exclude] if isinstance(exclude, str) else list(exclude or [])
        if not isinstance(exclude_output, bool):
            raise MisconfigurationException(f"LSUVInit(exclude_output={exclude_output!r}): must be true or false.")
        self.exclude_output = exclude_output
        self.tol = tol
        self.max_iters = max_iters
        self.orthogonal_preinit = orthogonal_preinit
        self.bias = bias
        self.seed = seed
        self.strict = strict
        self.report = report
        self.vanish_below = vanish_below
        self.explode_above = explode_above
        self.initialized = False
        self.final_std: dict[str, float] = {}
        self.output_layers: list[str] = []

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            modules=self.modules, name=self.name, exclude=self.exclude, exclude_output=self.exclude_output
        )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.initialized or is_resuming(trainer):
            rank_zero_info("LSUVInit: resuming or already initialised; keeping the current weights.")
            return
        refuse_unsupported_strategy(trainer, "LSUVInit")
        if is_fsdp(trainer):
            raise MisconfigurationException(
                "LSUVInit does not support FSDP: it rescales layer by layer between forward passes of the sharded"
                " model. Run it once under DDP (or on one device) and load the weights, or use WeightInit."
            )
        batch = first_train_batch(trainer, pl_module)
        if batch is None:
            raise MisconfigurationException(
                "LSUVInit needs a batch from the training dataloader, but `trainer.fit` got none (no"
                " `train_dataloaders`, DataModule `train_dataloader()` or LightningModule `train_dataloader()`)."
                " Pass training data to `fit`, or use WeightInit instead."
            )
        example = noise_if_constant(pl_module.example_input_array)
        if example is not None:
            example = trainer.strategy.batch_to_device(example)
        layers = self._select(pl_module)
        with probe_guard(pl_module):
            probe = run_probe(pl_module, batch, example)
        if not probe.trace.order:
            raise MisconfigurationException(
                "LSUVInit could not call the module's `forward` on the first training batch."
                f" {probe.describe_failure()}"
            )
        if self.exclude_output:
            self.output_layers = list(probe.trace.output_layers)
            layers = [n for n in layers if n not in self.output_layers]
            rank_zero_info(f"LSUVInit: output layer(s) left alone: {', '.join(self.output_layers)}.")
        missed = [n for n in layers if probe.runner_for(n) is None]
        if missed:
            how = probe.forward[0] if probe.forward else "forward"
            rank_zero_warn(
                f"LSUVInit: {len(missed)} layer(s) are not reached by `{how}`"
                f" and are left as they are (not pre-initialised, not rescaled): {', '.join(missed)}."
            )
        layers = [n for n in probe.trace.order if n in set(layers) - set(missed)]
        seed = shared_seed(trainer, self.seed)
        rule = InitRule(
            modules=tuple(self.modules),
            name=tuple(self.name),
            weight="orthogonal" if self.orthogonal_preinit else None,
            weight_args={"gain": 1.0},
            bias="zeros" if self.bias == "zeros" else None,
        )
        if layers and (rule.weight or rule.bias):
            plan = build_plan(pl_module, [rule], self.exclude)
            entries = [e for e in plan.entries if e.module in layers and e.param in ("weight", "bias")]
            apply_plan(pl_module, entries, seed)
        self.final_std = self._rescale(trainer, pl_module, probe, layers)
        verify_same_on_all_ranks(trainer, pl_module, "LSUVInit")
        self.initialized = True
        summary = ", ".join(f"{k}: {v:.3f}" for k, v in self.final_std.items())
        rank_zero_info(f"LSUVInit: output std per layer after rescaling: {summary}")
        report_and_check(
            trainer, pl_module, batch, example, self.report, self.vanish_below, self.explode_above, "LSUVInit"
        )

    def _select(self, pl_module: pl.LightningModule) -> list[str]:
        selector = InitRule(modules=tuple(self.modules), name=tuple(self.name), weight="keep")
        layers = [
            n
            for n, m in module_table(pl_module).items()
            if ".parametrizations." not in f".{n}."
            and selector.matches_module(n, m)
            and not any(fnmatch.fnmatchcase(n, p) for p in self.exclude)
            and _weight_of(m) is not None
        ]
        if not layers:
            raise MisconfigurationException(
                f"LSUVInit(modules={self.modules}, name={self.name or None}, exclude={self.exclude or None}) selects no"
                f" layer with a weight. Modules with parameters: {describe_modules(pl_module)}."
            )
        return layers

    def _rescale(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, probe: Probe, layers: list[str]
    ) -> dict[str, float]:
        modules = module_table(pl_module)
        final: dict[str, float] = {}
        with probe_guard(pl_module), torch.no_grad():
            pl_module.train()
            for layer in layers:
                module = modules[layer]
                run = probe.runner_for(layer)
                std = math.nan
                for attempt in range(self.max_iters + 1):
                    std = self._output_std(trainer, pl_module, module, run)
                    if abs(std - 1.0) <= self.tol or attempt == self.max_iters or not math.isfinite(std) or std == 0:
                        break
                    write_tensor(module, "weight", effective_tensor(module, "weight") / std)
                final[layer] = std
                if not abs(std - 1.0) <= self.tol:
                    message = (
                        f"LSUVInit: layer {layer!r} has output std {std:.4g} after {self.max_iters} rescalings"
                        f" (tol={self.tol}). Raise `max_iters`, loosen `tol`, or exclude the layer."
                    )
                    if self.strict:
                        raise MisconfigurationException(message)
                    rank_zero_warn(message)
        return final

    @staticmethod
    def _output_std(trainer: pl.Trainer, pl_module: pl.LightningModule, module: nn.Module, run: Any) -> float:
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _StopForward

        handle = module.register_forward_hook(hook)
        try:
            torch.manual_seed(0)  # same dropout mask at every attempt; the caller restores the global RNG
            run()
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            return math.nan
        sums = trainer.strategy.reduce(moments(captured[0]).to(pl_module.device), reduce_op="sum").cpu()
        return float(variance_of(sums).sqrt())

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"initialized": self.initialized, "final_std": dict(self.final_std)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initialized = bool(state_dict.get("initialized", False))
        self.final_std = dict(state_dict.get("final_std", {}))


def _weight_of(module: nn.Module) -> torch.Tensor | None:
    try:
        weight = module.weight
    except AttributeError:
        return None
    return weight if isinstance(weight, torch.Tensor) else None
