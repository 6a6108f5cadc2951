"""Init rules: which parameters get which scheme. First matching rule wins, per parameter.

A rule selects modules by **type** and/or by **qualified name**, optionally narrows to some of the module's own
parameters, and names a scheme for weights and one for biases::

    {modules: [Linear, Conv1d], name: "encoder.*", params: ["weight*"], weight: kaiming_normal,
     weight_args: {nonlinearity: auto}, bias: zeros, include_frozen: false}

* ``modules``: class names, matched against the module's class and its base classes (``Linear`` also matches
  ``LazyLinear``-materialised and ``NonDynamicallyQuantizableLinear``), or a full path (``torch.nn.Linear``), or a group
  alias: ``linear``, ``conv`` (Conv1/2/3d and ConvTranspose), ``conv_transpose``, ``norm`` (BatchNorm, LayerNorm,
  GroupNorm, InstanceNorm, RMSNorm), ``rnn`` (RNN/LSTM/GRU), ``embedding``. Omitted: any module.
* ``name``: a shell-style **glob** (``fnmatch``, case-sensitive) on the qualified module name, e.g. ``"head"``,
  ``"head.*"``, ``"blocks.*.fc2"``; a list of globs means any of them.
* ``params``: globs on the module's own parameter names (``weight``, ``bias``, ``weight_hh_l0``...). Omitted: all.
* ``weight``/``bias``: scheme for parameters whose name does not / does start with ``bias``; ``weight_args``/
  ``bias_args`` their arguments. Omitted: those parameters are left to later rules.
* ``include_frozen``: also initialise parameters with ``requires_grad=False`` (off by default, so frozen pretrained
  parts stay as they are).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn
from torch.nn.utils import parametrize

from lightning_tuning.init.schemes import validate_scheme

_GROUPS: dict[str, tuple[type[nn.Module], ...]] = {
    "linear": (nn.Linear, nn.Bilinear),
    "conv": (nn.modules.conv._ConvNd,),
    "conv_transpose": (nn.modules.conv._ConvTransposeNd,),
    "norm": (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm),
    "rnn": (nn.RNNBase, nn.RNNCellBase),
    "embedding": (nn.Embedding, nn.EmbeddingBag),
}

RULE_KEYS = ("modules", "name", "params", "weight", "weight_args", "bias", "bias_args", "include_frozen")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class InitRule:
    """One selection → scheme rule (see the module docstring for the fields)."""

    modules: tuple[str, ...] = ()
    name: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    weight: str | None = None
    weight_args: Mapping[str, Any] = field(default_factory=dict)
    bias: str | None = None
    bias_args: Mapping[str, Any] = field(default_factory=dict)
    include_frozen: bool = False

    @classmethod
    def parse(cls, raw: InitRule | Mapping[str, Any], index: int) -> InitRule:
        """Validate one rule given as a dict (YAML) or an ``InitRule``; fill scheme defaults.

        Raises:
            ValueError: Naming the rule index, the bad key or value, and what is allowed.
        """
        if isinstance(raw, InitRule):
            raw = asdict(raw)
        if not isinstance(raw, Mapping):
            raise ValueError(f"rules[{index}] must be a mapping with keys {list(RULE_KEYS)}, got {raw!r}.")
        unknown = sorted(set(raw) - set(RULE_KEYS))
        if unknown:
            raise ValueError(f"rules[{index}] has unknown key(s) {unknown}. Allowed keys: {list(RULE_KEYS)}.")
        if raw.get("weight") is None and raw.get("bias") is None:
            raise ValueError(f"rules[{index}] = {dict(raw)} names no scheme: give `weight:` and/or `bias:`.")
        modules = _as_list(raw.get("modules"))
        for entry in modules:
            if not isinstance(entry, str):
                raise ValueError(f"rules[{index}].modules entries must be class names, got {entry!r}.")
        try:
            weight_args = validate_scheme(raw["weight"], raw.get("weight_args")) if raw.get("weight") else {}
            bias_args = validate_scheme(raw["bias"], raw.get("bias_args")) if raw.get("bias") else {}
        except ValueError as err:
            raise ValueError(f"rules[{index}]: {err}") from None
        return cls(
            modules=tuple(modules),
            name=tuple(_as_list(raw.get("name"))),
            params=tuple(_as_list(raw.get("params"))),
            weight=raw.get("weight"),
            weight_args=weight_args,
            bias=raw.get("bias"),
            bias_args=bias_args,
            include_frozen=bool(raw.get("include_frozen", False)),
        )

    def matches_module(self, qualified_name: str, module: nn.Module) -> bool:
        """Whether the module is selected by ``modules`` and ``name``."""
        if self.name and not any(fnmatch.fnmatchcase(qualified_name, pattern) for pattern in self.name):
            return False
        return not self.modules or any(_type_matches(module, entry) for entry in self.modules)

    def scheme_for(self, param_name: str) -> tuple[str | None, Mapping[str, Any]]:
        """The scheme and arguments this rule gives the module's parameter ``param_name`` (``None``: not covered)."""
        if self.params and not any(fnmatch.fnmatchcase(param_name, pattern) for pattern in self.params):
            return None, {}
        if param_name.startswith("bias"):
            return self.bias, self.bias_args
        return self.weight, self.weight_args

    def describe(self) -> str:
        parts = []
        if self.modules:
            parts.append(f"modules={list(self.modules)}")
        if self.name:
            parts.append(f"name={list(self.name)}")
        if self.params:
            parts.append(f"params={list(self.params)}")
        return ", ".join(parts) or "any module"


def _type_matches(module: nn.Module, entry: str) -> bool:
    group = _GROUPS.get(entry)
    if group is not None:
        return isinstance(module, group)
    for klass in type(module).__mro__:
        if entry in (klass.__name__, f"{klass.__module__}.{klass.__qualname__}"):
            return True
    # `torch.nn.Linear` is written `torch.nn.modules.linear.Linear` in __module__; accept the public spelling too
    return entry.startswith("torch.nn.") and any(entry.rsplit(".", 1)[-1] == k.__name__ for k in type(module).__mro__)


def parse_rules(rules: Sequence[InitRule | Mapping[str, Any]] | None) -> list[InitRule]:
    """Validate a rule list (cheap, no model needed)."""
    if rules is None:
        return []
    if isinstance(rules, (str, Mapping)):
        raise ValueError(f"rules must be a list of rules, got {type(rules).__name__}: {rules!r}.")
    return [InitRule.parse(raw, i) for i, raw in enumerate(rules)]


def module_param_names(module: nn.Module) -> list[str]:
    """The module's own parameter names, with a parametrised tensor listed under its plain name (``weight``)."""
    names = [name for name, _ in module.named_parameters(recurse=False)]
    if parametrize.is_parametrized(module):
        names.extend(getattr(module, "parametrizations").keys())  # noqa: B009
    return names


#: Path parts that wrappers insert into qualified names (FSDP, activation checkpointing, torch.compile).
WRAPPER_PARTS = ("_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod")


def canonical_name(name: str) -> str:
    """A qualified module name without wrapper parts: what the same module is called in the unwrapped model."""
    return ".".join(part for part in name.split(".") if part not in WRAPPER_PARTS)


def _is_wrapper(module: nn.Module) -> bool:
    return type(module).__name__ in ("FullyShardedDataParallel", "CheckpointWrapper", "OptimizedModule")


def module_table(model: nn.Module) -> dict[str, nn.Module]:
    """``dict(model.named_modules())`` keyed by canonical names (an FSDP-wrapped ``body`` is ``body``, the wrapped
    module itself, not its wrapper), so names, rules and per-parameter seeds match the unwrapped model."""
    return {canonical_name(name): module for name, module in model.named_modules() if not _is_wrapper(module)}


def initialisable_modules(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    """Modules that own parameters (canonical names), skipping wrappers and torch parametrizations' internals."""
    for name, module in module_table(model).items():
        if ".parametrizations." in f".{name}.":  # g and v of a weight-normalised layer belong to its parent
            continue
        if module_param_names(module):
            yield name, module


def param_requires_grad(module: nn.Module, param_name: str) -> bool:
    if parametrize.is_parametrized(module, param_name):
        return any(p.requires_grad for p in getattr(module, "parametrizations")[param_name].parameters())  # noqa: B009
    return getattr(module, param_name).requires_grad


@dataclass(frozen=True)
class PlanEntry:
    """One parameter's init: ``module.param`` ← ``scheme(args)``, chosen by rule number ``rule``."""

    module: str
    param: str
    rule: int
    scheme: str
    args: Mapping[str, Any]

    @property
    def qualified_name(self) -> str:
        return f"{self.module}.{self.param}" if self.module else self.param

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.qualified_name, "rule": self.rule, "scheme": self.scheme, "args": dict(self.args)}


@dataclass
class Plan:
    """The resolved plan and what each rule selected (for "matches nothing" errors and shadowing warnings)."""

    entries: list[PlanEntry]
    selected_by_rule: dict[int, int]  # rule → number of parameters it selected (before first-match-wins)
    won_by_rule: dict[int, int]  # rule → number of parameters it got


def build_plan(model: nn.Module, rules: Sequence[InitRule], exclude: Sequence[str] = ()) -> Plan:
    """Resolve rules against a model: first matching rule per parameter; frozen and ``exclude``-d ones skipped.

    Args:
        model: The model (``LightningModule``), names are relative to it.
        rules: Parsed rules, in priority order.
        exclude: Globs on qualified *module* names whose parameters are never touched (e.g. pretrained ``backbone.*``).
    """
    entries: list[PlanEntry] = []
    selected = dict.fromkeys(range(len(rules)), 0)
    won = dict.fromkeys(range(len(rules)), 0)
    for module_name, module in initialisable_modules(model):
        if any(fnmatch.fnmatchcase(module_name, pattern) for pattern in exclude):
            continue
        matching = [i for i, rule in enumerate(rules) if rule.matches_module(module_name, module)]
        if not matching:
            continue
        for param_name in module_param_names(module):
            frozen = not param_requires_grad(module, param_name)
            chosen: PlanEntry | None = None
            for i in matching:
                rule = rules[i]
                scheme, args = rule.scheme_for(param_name)
                if scheme is None or (frozen and not rule.include_frozen):
                    continue
                selected[i] += 1
                if chosen is None:
                    chosen = PlanEntry(module_name, param_name, i, scheme, args)
                    won[i] += 1
            if chosen is not None:
                entries.append(chosen)
    return Plan(entries, selected, won)


def describe_modules(model: nn.Module, limit: int = 40) -> str:
    """``name (Type)`` of every module holding parameters, for error messages."""
    items = [f"{name or '<root>'} ({type(module).__name__})" for name, module in initialisable_modules(model)]
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def documented_default(module: nn.Module) -> tuple[str, Mapping[str, Any], str]:
    """The init a layer's own ``reset_parameters()`` documents for its weight, as ``(scheme, args, description)``.

    ``nn.Linear`` (and subclasses such as ``MultiheadAttention.out_proj``) and every ``Conv``/``ConvTranspose``:
    ``kaiming_uniform_(a=sqrt(5))``,
    i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (written explicitly so it also works through a parametrisation);
    any other module: its ``reset_parameters()`` (scheme ``default``).
    """
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        args = validate_scheme("kaiming_uniform", {"a": math.sqrt(5.0), "mode": "fan_in", "nonlinearity": "leaky_relu"})
        return "kaiming_uniform", args, f"{type(module).__name__} default U(-1/sqrt(fan_in), 1/sqrt(fan_in))"
    return "default", {}, f"{type(module).__name__}.reset_parameters()"


def resolve_auto(
    model: nn.Module,
    entries: Sequence[PlanEntry],
    traced: Mapping[str, Any],
    structural: Mapping[str, Any],
    needs_activation: Any,
) -> tuple[list[PlanEntry], dict[str, Any], dict[str, str]]:
    """Give every ``auto`` entry an activation: traced, else read from the structure, else the layer's own default.

    Args:
        traced: Layer → input activation found by the traced forward.
        structural: Layer → input activation read from ``nn.Sequential`` structure (for layers forward never ran).
        needs_activation: ``(scheme, args) -> bool``.

    Returns:
        The entries (``auto`` entries of layers with no activation replaced by :func:`documented_default`), the
        activation per layer, and layer → a note saying where its ``auto`` gain came from when not from the trace.
    """
    modules = module_table(model)
    activations: dict[str, Any] = dict(traced)
    notes: dict[str, str] = {}
    out: list[PlanEntry] = []
    for entry in entries:
        if not needs_activation(entry.scheme, entry.args) or entry.module in traced:
            out.append(entry)
            continue
        if entry.module in structural:
            activations[entry.module] = structural[entry.module]
            notes[entry.module] = (
                f"not called through forward; input activation {structural[entry.module]!r} read"
                " from the nn.Sequential it sits in"
            )
            out.append(entry)
            continue
        scheme, args, description = documented_default(modules[entry.module])
        notes[entry.module] = f"not called through forward; `auto` fell back to the layer's own default ({description})"
        out.append(PlanEntry(entry.module, entry.param, entry.rule, scheme, args))
    return out, activations, notes
