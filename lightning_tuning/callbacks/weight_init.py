r"""
Weight initialisation
=====================

Initialise a LightningModule's parameters from an ordered list of rules, reproducibly and identically on every rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_tuning.callbacks._init_probe import (
    Probe,
    is_fsdp,
    is_resuming,
    materialised,
    probe_guard,
    refuse_unsupported_strategy,
    require_probe_input,
    run_probe,
    shared_seed,
)
from lightning_tuning.callbacks._init_report import check_thresholds, measure, publish, report_and_check
from lightning_tuning.init.apply import InitHadNoEffectError, apply_plan, parameter_checksum
from lightning_tuning.init.rules import InitRule, PlanEntry, build_plan, describe_modules, parse_rules, resolve_auto
from lightning_tuning.init.schemes import needs_activation
from lightning_tuning.init.signal import DRIFT_BAND, correct_drift, drift_checked
from lightning_tuning.init.tracing import structural_input_activations


class WeightInit(Callback):
    r"""Initialise parameters by rules: first matching rule per parameter wins, everything else is left alone.

    A rule (a dict in YAML) selects modules and names a scheme for their weights and biases::

        {modules: [Linear, conv], name: "encoder.*", params: ["weight*"],
         weight: kaiming_normal, weight_args: {nonlinearity: auto}, bias: zeros, include_frozen: false}

    ``modules`` are class names (base classes count; ``torch.nn.Linear`` spelled in full works too) or the aliases
    ``linear``, ``conv``, ``conv_transpose``, ``norm``, ``rnn``, ``embedding``; ``name`` and ``params`` are shell
    **globs** (``fnmatch``) on the qualified module name and on the module's own parameter names. ``weight`` applies
    to parameters whose name does not start with ``bias``. Schemes: ``zeros``, ``ones``, ``constant``, ``normal``,
    ``uniform``, ``trunc_normal``, ``xavier_uniform``, ``xavier_normal``, ``kaiming_uniform``, ``kaiming_normal``,
    ``orthogonal``, ``lecun_normal``, ``variance_scaling``, ``default`` (``reset_parameters()``) and ``keep``;
    arguments and conventions are documented in :mod:`lightning_tuning.init.schemes`. ``gain: auto`` /
    ``nonlinearity: auto`` use the activation the layer's *input* went through, found by one traced call of the
    module's ``forward`` (``linear``, i.e. gain 1, for a layer that reads raw data or another layer's output): this is
    He et al.'s derivation. For GELU, SiLU and other non-homogeneous activations no fixed gain keeps a deep net's
    signal bounded (their variance map's fixed point is unstable, so each layer's few percent of finite-width noise
    grows with depth), so with ``keep_signal`` (default) the traced forward is run again and every ``auto`` layer whose
    output std has drifted beyond 1.5x (or below 1/1.5x) of its chain's first layer is rescaled back to that std;
    layers within the band keep the closed-form gain exactly. A 20-layer GELU/SiLU/tanh/ReLU MLP of width 256 then
    stays within 0.5-2x of the input's std at every layer (:mod:`lightning_tuning.init.signal`, docs/guide.md).
    Layers ``forward`` never calls (``MultiheadAttention.out_proj``, a GAN's discriminator when ``forward`` is the
    generator) take the activation from the ``nn.Sequential`` they sit in when it is certain, else their own
    documented default init (``U(±1/sqrt(fan_in))`` for Linear/Conv); the log says which layers did.

    ``exclude_output=True`` leaves the output layer(s) alone: the layers whose output reaches ``forward``'s result
    without passing through another layer (found from the autograd graph of the traced call, so it works whatever the
    layer is called: ``head``, ``decoder.2``, ``net.6``).

    The probe calls ``forward`` with the first training batch in the obvious ways (``x`` of an ``(x, y)`` batch, the
    batch unpacked, a dict as keywords, ...), then with ``example_input_array``; it never runs backward, an optimizer
    or a logger (see :mod:`lightning_tuning.callbacks._init_probe`). Every rule is checked and every tensor drawn
    before the first is written: an error leaves the model as it was.

    When: in ``on_fit_start``, i.e. after ``configure_model`` (so modules built there are covered), after a DDP/default
    checkpoint restore and before the first optimizer step. Every parameter is drawn from its own generator seeded by
    ``(seed, qualified name)``, so all ranks compute the same values without a broadcast, and a checksum of all
    parameters is compared across ranks. The optimizer already holds the parameters; they are overwritten in place.
    When ``trainer.fit`` resumes from a checkpoint (``ckpt_path``), or this callback already ran (its state says so),
    nothing is re-initialised. Under FSDP/DeepSpeed the checkpoint is restored after this hook anyway.

    Args:
        rules: Ordered rules (dicts or :class:`~lightning_tuning.init.InitRule`), see above.
        seed: Seed of the per-parameter generators. ``None``: rank 0's ``torch.initial_seed()``, broadcast (so a
            ``seed_everything`` run is reproducible and the ranks still agree).
        exclude: Globs on qualified module names that are never touched (e.g. a pretrained ``"backbone*"``).
        exclude_output: Never touch the output layer(s), found from the traced ``forward`` (see above).
        strict: Raise if a rule selects no parameter (it is probably misspelled); otherwise warn.
        verify_ranks: Under multi-process strategies, compare a checksum of all parameters across ranks after init.
        report: Print and log the per-layer init report (weight std, output mean/std, gradient std, dead ReLUs).
        report_every_n_steps: Also measure and log the report every N optimizer steps during training.
        vanish_below: Fail before training when a layer's output std at init is below this.
        explode_above: Fail before training when a layer's output std at init is above this.
        keep_signal: After an ``auto``-gain init, measure the signal on the traced forward and rescale any layer
            whose output std has drifted beyond 1.5x (or below 1/1.5x) of its chain's first layer back to that
            layer's std (see above). ``False`` keeps the closed-form gains exactly.

    Raises:
        MisconfigurationException: On a bad rule, unknown scheme or argument, or bad option (in ``__init__``); on a rule
            that matches nothing, an ``auto`` gain without any input to trace, an init that had no effect, ranks that
            disagree, or a vanishing/exploding signal (in ``on_fit_start``).

    Example::

        >>> from lightning.pytorch import Trainer
        >>> init = WeightInit(
        ...     rules=[
        ...         {"name": "head", "weight": "xavier_uniform", "bias": "zeros"},
        ...         {"modules": ["Linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "relu"},
        ...          "bias": "zeros"},
        ...     ],
        ...     seed=0,
        ... )
        >>> trainer = Trainer(callbacks=[init])
    """

    def __init__(
        self,
        rules: Sequence[dict[str, Any]],
        seed: int | None = None,
        exclude: Sequence[str] | None = None,
        exclude_output: bool = False,
        strict: bool = True,
        verify_ranks: bool = True,
        report: bool = False,
        report_every_n_steps: int | None = None,
        vanish_below: float | None = None,
        explode_above: float | None = None,
        keep_signal: bool = True,
    ) -> None:
        try:
            self._rules: list[InitRule] = parse_rules(rules)
        except ValueError as err:
            raise MisconfigurationException(f"WeightInit(rules=...): {err}") from None
        if not self._rules:
            raise MisconfigurationException(
                "WeightInit(rules=[]) has nothing to do. Give at least one rule, e.g."
                " {modules: [Linear], weight: kaiming_normal, weight_args: {nonlinearity: auto}, bias: zeros}."
            )
        if report_every_n_steps is not None and report_every_n_steps < 1:
            raise MisconfigurationException(
                f"WeightInit(report_every_n_steps={report_every_n_steps!r}): must be a positive integer or None."
            )
        check_thresholds(vanish_below, explode_above, "WeightInit")
        if isinstance(exclude, str):
            exclude = [exclude]
        self.rules = [dict(r) if isinstance(r, Mapping) else r for r in rules]
        self.seed = seed
        self.exclude = list(exclude or [])
        if not isinstance(exclude_output, bool):
            raise MisconfigurationException(f"WeightInit(exclude_output={exclude_output!r}): must be true or false.")
        self.exclude_output = exclude_output
        self.strict = strict
        self.verify_ranks = verify_ranks
        self.report = report
        self.report_every_n_steps = report_every_n_steps
        self.vanish_below = vanish_below
        self.explode_above = explode_above
        self.initialized = False
        self.seed_used: int | None = None
        self.plan: list[dict[str, Any]] = []
        self.output_layers: list[str] = []
        self.notes: dict[str, str] = {}
        if not isinstance(keep_signal, bool):
            raise MisconfigurationException(f"WeightInit(keep_signal={keep_signal!r}): must be true or false.")
        self.keep_signal = keep_signal
        self.corrections: dict[str, float] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            rules=self.rules, seed=self.seed, exclude=self.exclude, exclude_output=self.exclude_output
        )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.initialized or is_resuming(trainer):
            why = "resuming from a checkpoint" if is_resuming(trainer) else "parameters were already initialised"
            rank_zero_info(f"WeightInit: {why}; keeping the current weights.")
        else:
            self._initialise(trainer, pl_module)
        if self.report or self.vanish_below is not None or self.explode_above is not None:
            batch, example = require_probe_input(trainer, pl_module, "WeightInit(report=True)", "a batch to measure")
            report_and_check(
                trainer,
                pl_module,
                batch,
                example,
                self.report,
                self.vanish_below,
                self.explode_above,
                "WeightInit",
                self.notes,
            )

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = self.report_every_n_steps
        if every is None or trainer.global_step == 0 or trainer.global_step % every:
            return
        if getattr(self, "_last_report_step", None) == trainer.global_step:  # gradient accumulation repeats a step
            return
        self._last_report_step = trainer.global_step
        publish(trainer, measure(pl_module, batch, None), "WeightInit report")

    def _initialise(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        refuse_unsupported_strategy(trainer, "WeightInit")
        plan = build_plan(pl_module, self._rules, self.exclude)
        for index, rule in enumerate(self._rules):
            if plan.selected_by_rule[index] == 0:
                message = (
                    f"WeightInit: rules[{index}] ({rule.describe()}) selects no parameter of"
                    f" {type(pl_module).__name__}. Modules with parameters: {describe_modules(pl_module)}."
                    " Fix `modules`/`name`/`params` (names are globs, e.g. 'head.*'), or set `include_frozen: true` for"
                    " frozen parameters."
                )
                if self.strict:
                    raise MisconfigurationException(message)
                rank_zero_warn(message)
            elif plan.won_by_rule[index] == 0:
                rank_zero_warn(
                    f"WeightInit: rules[{index}] ({rule.describe()}) is shadowed: every parameter it selects is taken"
                    " by an earlier rule (first match wins). Move it up if it should apply."
                )
        entries = plan.entries
        auto = any(needs_activation(e.scheme, e.args) for e in entries)
        activations = None
        probe: Probe | None = None
        if auto or self.exclude_output:
            probe = _probe(trainer, pl_module, "a forward pass for `auto` gains / `exclude_output`")
            traced = probe.forward is not None or probe.training_step is not None
            if self.exclude_output:
                if not traced or not probe.trace.output_layers:
                    raise MisconfigurationException(
                        "WeightInit(exclude_output=True) needs a traced call of `forward` to find the output layer,"
                        f" but none worked. {probe.describe_failure()}"
                    )
                self.output_layers = list(probe.trace.output_layers)
                entries = [e for e in entries if e.module not in self.output_layers]
                rank_zero_info(f"WeightInit: output layer(s) left alone: {', '.join(self.output_layers)}.")
            if auto:
                if not traced:
                    rank_zero_warn(
                        "WeightInit: could not call the module's `forward` to find the activations for `auto` gains;"
                        " using the model's structure or each layer's own default init instead."
                        f" {probe.describe_failure()}"
                    )
                inputs = {k: v for k, v in probe.trace.input_activation.items() if k in probe.trace.order}
                pending = [e.module for e in entries if e.module not in inputs]
                structural = structural_input_activations(pl_module, pending)
                entries, activations, self.notes = resolve_auto(
                    pl_module, entries, inputs, structural, needs_activation
                )
                if self.notes:
                    lines = "\n  ".join(f"{name}: {note}" for name, note in self.notes.items())
                    rank_zero_warn(f"WeightInit: `auto` gain not from the traced forward for:\n  {lines}")
        seed = shared_seed(trainer, self.seed)
        with materialised(trainer):  # FSDP: full parameters, written back to each rank's shard
            try:
                apply_plan(pl_module, entries, seed, activations)
            except InitHadNoEffectError as err:
                raise MisconfigurationException(f"WeightInit: {err}") from None
            except ValueError as err:
                raise MisconfigurationException(f"WeightInit: {err}") from None
        if auto and probe is not None and self.keep_signal:
            self.corrections = _keep_signal(trainer, pl_module, probe, entries)
            for layer, factor in self.corrections.items():
                self.notes[layer] = (
                    f"`auto` gain x{factor:.3f}: the signal had drifted beyond {DRIFT_BAND}x (corrected)"
                )
        with materialised(trainer):
            if self.verify_ranks:
                verify_same_on_all_ranks(trainer, pl_module, "WeightInit")
        self.initialized = True
        self.seed_used = int(seed)
        self.plan = [entry.to_dict() for entry in entries]
        for entry, item in zip(entries, self.plan, strict=True):
            if entry.param == "weight" and entry.module in self.corrections:
                item["drift_correction"] = self.corrections[entry.module]
        rank_zero_info(f"WeightInit: initialised {len(entries)} parameter tensors (seed {seed}).")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"initialized": self.initialized, "seed_used": self.seed_used, "plan": self.plan}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initialized = bool(state_dict.get("initialized", False))
        self.seed_used = state_dict.get("seed_used")
        self.plan = list(state_dict.get("plan", []))


def _keep_signal(
    trainer: pl.Trainer, pl_module: pl.LightningModule, probe: Probe, entries: Sequence[PlanEntry]
) -> dict[str, float]:
    """Correct the finite-width drift of the ``auto`` layers :func:`~lightning_tuning.init.signal.drift_checked`
    selects (:func:`~lightning_tuning.init.signal.correct_drift`) on the traced ``forward``. The ranks pool their
    measurements, so all make the same corrections. Skipped under FSDP (the forward needs the sharded model). A
    failure leaves the closed-form init as it was and warns.
    """
    if probe.forward is None or is_fsdp(trainer):
        return {}
    auto = {e.module for e in entries if e.param == "weight" and needs_activation(e.scheme, e.args)}
    traced = [name for name in probe.trace.order if name in auto and name in probe.forward_layers]
    layers = drift_checked(traced, probe.trace.input_activation)
    if not layers:
        return {}
    reduce_sum = None
    if trainer.world_size > 1:
        device = pl_module.device

        def reduce_sum(values: torch.Tensor) -> torch.Tensor:
            return trainer.strategy.reduce(values.to(device), reduce_op="sum").cpu()

    try:
        with probe_guard(pl_module):
            pl_module.train()  # as the probe traced it
            corrections = correct_drift(pl_module, layers, probe.trace.input_source, probe.forward[1], reduce_sum)
    except Exception as err:  # correct_drift put its changes back: the closed-form gains stay
        rank_zero_warn(
            f"WeightInit: could not measure the signal to keep it bounded ({err}); kept the closed-form gains."
        )
        return {}
    if corrections:
        listed = ", ".join(f"{name} x{factor:.3f}" for name, factor in corrections.items())
        rank_zero_info(
            f"WeightInit: `auto` gains corrected where the signal had drifted beyond {DRIFT_BAND}x of its chain's first"
            f" layer: {listed}."
        )
    return corrections


def _probe(trainer: pl.Trainer, pl_module: pl.LightningModule, need: str) -> Probe:
    batch, example = require_probe_input(trainer, pl_module, "WeightInit", need)
    with probe_guard(pl_module):
        return run_probe(pl_module, batch, example)


def verify_same_on_all_ranks(trainer: pl.Trainer, pl_module: pl.LightningModule, who: str) -> None:
    """Compare a checksum of all parameters across ranks; raise on every rank if they differ.

    Raises:
        RuntimeError: If any two ranks hold different parameters.
    """
    if trainer.world_size <= 1:
        return
    checksum = parameter_checksum(pl_module).to(pl_module.device)
    gathered = trainer.strategy.all_gather(checksum).reshape(-1).cpu()
    if not torch.all(gathered == gathered[0]):
        raise RuntimeError(
            f"{who}: ranks hold different parameters after init (checksums {gathered.tolist()}). Something outside"
            " the init changed them per rank; check for rank-dependent code in the model or other callbacks."
        )
