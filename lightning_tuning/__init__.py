"""lightning_tuning: deep-learning tuning practices as PyTorch Lightning callbacks.

Every public callback is importable from the top level, so a LightningCLI config can say
``class_path: lightning_tuning.Warmup``. Imports are lazy: ``import lightning_tuning`` stays cheap and a
callback's module is loaded the first time its name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lightning_tuning.__about__ import __version__

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
    "WarmupStableDecay": "lightning_tuning.callbacks.warmup_stable_decay",
    "InverseSqrt": "lightning_tuning.callbacks.inverse_sqrt",
    # adaptive learning rate
    "PlateauDecay": "lightning_tuning.callbacks.plateau_decay",
    "LRRangeTest": "lightning_tuning.callbacks.lr_range_test",
    "ScaleLR": "lightning_tuning.callbacks.scale_lr",
    "LayerwiseLR": "lightning_tuning.callbacks.layerwise_lr",
    "ScheduleFree": "lightning_tuning.callbacks.schedule_free",
    "BaseLR": "lightning_tuning.callbacks.base_lr",
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
    from lightning_tuning.callbacks.base_lr import BaseLR as BaseLR
    from lightning_tuning.callbacks.cosine_annealing import CosineAnnealing as CosineAnnealing
    from lightning_tuning.callbacks.cyclic_lr import CyclicLR as CyclicLR
    from lightning_tuning.callbacks.dashboard import TuningDashboard as TuningDashboard
    from lightning_tuning.callbacks.exponential_decay import ExponentialDecay as ExponentialDecay
    from lightning_tuning.callbacks.inverse_sqrt import InverseSqrt as InverseSqrt
    from lightning_tuning.callbacks.layerwise_lr import LayerwiseLR as LayerwiseLR
    from lightning_tuning.callbacks.lr_range_test import LRRangeTest as LRRangeTest
    from lightning_tuning.callbacks.lsuv_init import LSUVInit as LSUVInit
    from lightning_tuning.callbacks.multi_step_decay import MultiStepDecay as MultiStepDecay
    from lightning_tuning.callbacks.one_cycle import OneCycle as OneCycle
    from lightning_tuning.callbacks.plateau_decay import PlateauDecay as PlateauDecay
    from lightning_tuning.callbacks.polynomial_decay import PolynomialDecay as PolynomialDecay
    from lightning_tuning.callbacks.scale_lr import ScaleLR as ScaleLR
    from lightning_tuning.callbacks.schedule_free import ScheduleFree as ScheduleFree
    from lightning_tuning.callbacks.step_decay import StepDecay as StepDecay
    from lightning_tuning.callbacks.warmup import Warmup as Warmup
    from lightning_tuning.callbacks.warmup_stable_decay import WarmupStableDecay as WarmupStableDecay
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
