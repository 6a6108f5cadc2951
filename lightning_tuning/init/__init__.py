"""Weight-initialisation math, free of Lightning: schemes, fans, gains, rules, seeding, tracing, statistics.

The callbacks :class:`~lightning_tuning.WeightInit`, :class:`~lightning_tuning.LSUVInit` and
:class:`~lightning_tuning.WeightNorm` are thin Lightning wrappers around these functions.
"""

from lightning_tuning.init.apply import InitHadNoEffectError, apply_plan, parameter_checksum, write_tensor
from lightning_tuning.init.fans import compute_fans, select_fan
from lightning_tuning.init.gain import Activation, known_nonlinearities, nonlinearity_gain, numeric_gain
from lightning_tuning.init.report import LayerStats, format_table, layer_statistics, signal_problems
from lightning_tuning.init.rules import (
    InitRule,
    Plan,
    PlanEntry,
    build_plan,
    canonical_name,
    documented_default,
    module_table,
    parse_rules,
    resolve_auto,
)
from lightning_tuning.init.schemes import SCHEMES, sample, validate_scheme
from lightning_tuning.init.seeding import derive_seed, generator_for
from lightning_tuning.init.tracing import TraceResult, structural_input_activations, trace_activations

__all__ = [
    "SCHEMES",
    "Activation",
    "InitHadNoEffectError",
    "InitRule",
    "LayerStats",
    "Plan",
    "PlanEntry",
    "TraceResult",
    "apply_plan",
    "build_plan",
    "canonical_name",
    "compute_fans",
    "derive_seed",
    "documented_default",
    "format_table",
    "generator_for",
    "known_nonlinearities",
    "layer_statistics",
    "module_table",
    "nonlinearity_gain",
    "numeric_gain",
    "parameter_checksum",
    "parse_rules",
    "resolve_auto",
    "sample",
    "select_fan",
    "signal_problems",
    "structural_input_activations",
    "trace_activations",
    "validate_scheme",
    "write_tensor",
]
