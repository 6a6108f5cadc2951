"""lightning_tuning: deep-learning tuning practices as PyTorch Lightning callbacks.

Every public callback is importable from the top level, so a LightningCLI config can say
``class_path: lightning_tuning.Warmup``. Imports are lazy: ``import lightning_tuning`` stays cheap and a
callback's module is loaded the first time its name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_EXPORTS: dict[str, str] = {
    # learning-rate schedules (one callback per module)
    "Warmup": "lightning_tuning.callbacks.warmup",
    "StepDecay": "lightning_tuning.callbacks.step_decay",
    "MultiStepDecay": "lightning_tuning.callbacks.multi_step_decay",
    "ExponentialDecay": "lightning_tuning.callbacks.exponential_decay",
    "CosineAnnealing": "lightning_tuning.callbacks.cosine_annealing",
    "PolynomialDecay": "lightning_tuning.callbacks.polynomial_decay",
    "CyclicLR": "lightning_tuning.callbacks.cyclic_lr",
    "OneCycle": "lightning_tuning.callbacks.one_cycle",
    # adaptive learning rate
    "PlateauDecay": "lightning_tuning.callbacks.plateau_decay",
    "LRRangeTest": "lightning_tuning.callbacks.lr_range_test",
    # weight initialisation
    "WeightInit": "lightning_tuning.callbacks.weight_init",
    "LSUVInit": "lightning_tuning.callbacks.lsuv_init",
    "WeightNorm": "lightning_tuning.callbacks.weight_norm",
    # dashboards
    "TuningDashboard": "lightning_tuning.callbacks.dashboard",
    "NonFiniteLossGuard": "lightning_tuning.callbacks.non_finite_guard",
    # command line
    "TuningCLI": "lightning_tuning.cli",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from lightning_tuning.callbacks.cosine_annealing import CosineAnnealing as CosineAnnealing
    from lightning_tuning.callbacks.cyclic_lr import CyclicLR as CyclicLR
    from lightning_tuning.callbacks.dashboard import TuningDashboard as TuningDashboard
    from lightning_tuning.callbacks.exponential_decay import ExponentialDecay as ExponentialDecay
    from lightning_tuning.callbacks.lr_range_test import LRRangeTest as LRRangeTest
    from lightning_tuning.callbacks.lsuv_init import LSUVInit as LSUVInit
    from lightning_tuning.callbacks.multi_step_decay import MultiStepDecay as MultiStepDecay
    from lightning_tuning.callbacks.one_cycle import OneCycle as OneCycle
    from lightning_tuning.callbacks.plateau_decay import PlateauDecay as PlateauDecay
    from lightning_tuning.callbacks.polynomial_decay import PolynomialDecay as PolynomialDecay
    from lightning_tuning.callbacks.step_decay import StepDecay as StepDecay
    from lightning_tuning.callbacks.warmup import Warmup as Warmup
    from lightning_tuning.callbacks.weight_init import WeightInit as WeightInit
    from lightning_tuning.callbacks.weight_norm import WeightNorm as WeightNorm
    from lightning_tuning.cli import TuningCLI as TuningCLI


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'lightning_tuning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
