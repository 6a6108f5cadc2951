"""Learning-rate schedules as pure functions of training progress, free of Lightning.

Every function here maps progress ``t`` (optimizer steps done, or epochs done) to a learning rate or a
momentum, in closed form. Because nothing is accumulated, a run resumed at step ``t`` gets exactly the
value an uninterrupted run had at step ``t``. The Lightning callbacks in :mod:`lightning_tuning.callbacks`
only count progress and write the result into the optimizer.
"""

from lightning_tuning.schedules.compose import compose_lr
from lightning_tuning.schedules.cosine import cosine_annealing_lr, cosine_warm_restarts_lr
from lightning_tuning.schedules.cyclic import cyclic_lr, cyclic_momentum
from lightning_tuning.schedules.decay import exponential_factor, multi_step_factor, polynomial_factor, step_factor
from lightning_tuning.schedules.durations import Duration, RunLength, resolve_duration
from lightning_tuning.schedules.one_cycle import OneCyclePhases, one_cycle_lr, one_cycle_momentum
from lightning_tuning.schedules.plateau import PlateauTracker
from lightning_tuning.schedules.progress import Progress
from lightning_tuning.schedules.warmup import untuned_warmup_length, warmup_end, warmup_factor

__all__ = [
    "Duration",
    "OneCyclePhases",
    "PlateauTracker",
    "Progress",
    "RunLength",
    "compose_lr",
    "cosine_annealing_lr",
    "cosine_warm_restarts_lr",
    "cyclic_lr",
    "cyclic_momentum",
    "exponential_factor",
    "multi_step_factor",
    "one_cycle_lr",
    "one_cycle_momentum",
    "polynomial_factor",
    "resolve_duration",
    "step_factor",
    "untuned_warmup_length",
    "warmup_end",
    "warmup_factor",
]
