"""The base class of every learning-rate schedule callback: config, duration resolution and pure factors.

A schedule callback holds its config, resolves its durations against the run at ``on_fit_start``, and from then on
is a pure function of training progress: :meth:`LRScheduleCallback.lr_factor` (and :meth:`~LRScheduleCallback.momentum`)
take a :class:`~lightning_tuning.schedules.Progress` and a group index, never the trainer. Everything that touches the
optimizers (counting steps, base LRs, writing, hooks, checks, logging) lives in the trainer's one
:class:`~lightning_tuning.callbacks._coordinator.LRCoordinator`. Checkpoints hold the step counts and the config;
resuming restores progress, and with it the LR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch.optim import Optimizer
from typing_extensions import override

from lightning_tuning._compat import should_update_logs
from lightning_tuning.callbacks._coordinator import (
    LRCoordinator,
    get_momentum,
    momentum_key,
    set_momentum,
    suspend_schedules,
)
from lightning_tuning.callbacks._names import unwrap_optimizer
from lightning_tuning.schedules import Progress, RunLength
from lightning_tuning.schedules.durations import Duration, Interval, check_duration, resolve_duration

__all__ = [
    "LRScheduleCallback",
    "get_momentum",
    "momentum_key",
    "run_length",
    "schedule_callbacks",
    "set_momentum",
    "suspend_schedules",
]


def schedule_callbacks(trainer: pl.Trainer) -> list[LRScheduleCallback]:
    """The schedule callbacks of ``trainer`` in list order."""
    return [cb for cb in trainer.callbacks if isinstance(cb, LRScheduleCallback)]  # type: ignore[attr-defined]


def run_length(trainer: pl.Trainer) -> RunLength:
    """The run's length in optimizer steps, as Lightning estimates it (this sets up the train dataloader).

    A run bounded by ``max_steps`` alone still gets its epoch length, so ``"10epochs"`` resolves there too. Under
    manual optimization Lightning's ``max_steps`` counts the steps of all optimizers together; the run length of
    each optimizer is then taken as ``max_steps / number of optimizers`` (each optimizer stepping once per batch).
    """
    total = trainer.estimated_stepping_batches
    module = trainer.lightning_module
    optimizers = len(trainer.optimizers)
    if (
        total != float("inf")
        and not module.automatic_optimization
        and optimizers > 1
        and trainer.max_steps != -1
        and total == trainer.max_steps
    ):
        total = -(-int(total) // optimizers)
    if trainer.train_dataloader is None:
        # Lightning answers `max_steps` without loading the data when max_epochs is -1; an epoch needs the data
        trainer.fit_loop.setup_data()
    batches = trainer.num_training_batches
    steps_per_epoch = None
    if batches != float("inf") and batches > 0:
        accumulate = max(1, trainer.accumulate_grad_batches)
        steps_per_epoch = max(1, -(-int(batches) // accumulate))
    return RunLength(total_steps=None if total == float("inf") else int(total), steps_per_epoch=steps_per_epoch)


def optimizer_names(optimizers: Sequence[Optimizer]) -> list[str]:
    """Short names for messages: the class name, suffixed with its index where several share it."""
    classes = [type(unwrap_optimizer(opt)).__name__ for opt in optimizers]
    return [name if classes.count(name) == 1 else f"{name}-{index}" for index, name in enumerate(classes)]


class LRScheduleCallback(Callback):
    """Base class of the learning-rate schedule callbacks; see the module docstring for the split of work.

    Subclasses implement :meth:`lr_factor` (and :meth:`momentum` where they cycle it, :meth:`lr_floor` for
    plateau-like ones), resolve their durations in :meth:`resolve`, their per-group arguments in
    :meth:`resolve_groups`, and list their config in ``self._config`` (plain values, compared on resume).

    Args:
        interval: what one unit of the schedule is: an optimizer step (``"step"``) or an epoch (``"epoch"``).
        optimizers: indices of the optimizers (in ``configure_optimizers`` order) this schedule applies to;
            ``None`` for all.
    """

    is_floor = False
    is_warmup = False
    cycles_momentum = False
    group_independent = False
    """Whether :meth:`lr_factor` is the same for every param group (it then ignores ``group_index`` and
    ``base_lr``); the coordinator computes such factors once per optimizer instead of once per group."""

    def __init__(self, interval: Interval = "step", optimizers: list[int] | None = None) -> None:
        if interval not in ("step", "epoch"):
            raise MisconfigurationException(
                f"{type(self).__name__}: `interval={interval!r}` is not allowed; use 'step' (one unit per optimizer "
                "step) or 'epoch' (one unit per epoch)."
            )
        if optimizers is not None and (
            not isinstance(optimizers, (list, tuple))
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in optimizers)
        ):
            raise MisconfigurationException(
                f"{type(self).__name__}: `optimizers={optimizers!r}` must be a list of optimizer indices "
                "(0 for the first optimizer configure_optimizers returns), or null for all optimizers."
            )
        self.interval: Interval = interval
        self._unit_field = 1 if interval == "epoch" else 0  # Progress is (step, epoch)
        self.optimizers = None if optimizers is None else list(optimizers)
        self._config: dict[str, Any] = {"interval": interval, "optimizers": self.optimizers}
        self._start_units: dict[int, int] = {}
        # where the schedule hands over (factor 1 from there on), per optimizer; empty without an `end`
        self._end_units: dict[int, int] = {}
        self.end: Duration | None = None
        self._notes: list[str] = []
        self._manual = False
        # whether a length was taken from the run (left out, or a fraction): under manual optimization that assumes
        # one step of each optimizer per batch, which the coordinator checks after the first epoch
        self.uses_run_length = False
        self._coordinator: LRCoordinator | None = None
        self._last_steps: list[int] = []
        # step counts read from a checkpoint, handed to the coordinator when training starts
        self.restored_steps: list[int] = []

    # ---- what subclasses provide -------------------------------------------------------------------------------

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        """Turn durations into schedule units and check they fit the run. Raise ``ValueError`` with the argument."""

    def resolve_groups(self, optimizer_index: int, optimizer: Optimizer) -> None:
        """Resolve per-group arguments for the optimizer's current param groups (again when groups are added).

        Raise ``ValueError`` naming the argument when a per-group list does not match the group count.
        """

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        """This schedule's multiplier of ``base_lr`` for the given group at ``progress``."""
        raise NotImplementedError

    def lr_floor(self, optimizer_index: int, group_index: int, base_lr: float) -> tuple[float, float]:
        """For plateau-like schedules (``is_floor``): ``(scale, min_lr)`` applied after all factors."""
        raise NotImplementedError

    def momentum(self, progress: Progress, optimizer_index: int, group_index: int) -> float | None:
        """The momentum (or Adam beta1) this schedule sets, or ``None`` to leave it alone."""
        return None

    def lint(self, run: RunLength) -> list[str]:
        """Known mistakes in this schedule for this run (warned at fit start and shown by the preview)."""
        return list(self._notes)

    def _lint_per_step_schedule(self, run: RunLength) -> list[str]:
        if self.interval != "epoch":
            return []
        return [
            f"{type(self).__name__} has interval='epoch': its LR changes once per epoch ({run.steps_per_epoch} "
            "optimizer steps), though it is meant to move every step. Use interval='step' and give durations "
            "such as '2epochs'."
        ]

    def _lint_ends_early(self, end: int, run: RunLength, after: str) -> list[str]:
        total = run.total(self.interval)
        if self.end is not None:  # the config states where the schedule hands over
            total = min(self._end_units.values(), default=total)
        if total is None or end >= total:
            return []
        return [
            f"{type(self).__name__} ends after {end} of the run's {total} {self.interval}s; for the last "
            f"{total - end} the LR {after}. Leave its length out to span the whole run."
        ]

    exclusive = False
    """Whether this schedule sets the LR alone while :meth:`is_running` (a warmup with ``exclusive=True``)."""

    def is_running(self, progress: Progress, optimizer_index: int) -> bool:
        """For an ``exclusive`` schedule: whether it is still running (holding the others at 1) at ``progress``."""
        return False

    def is_ready(self) -> bool:
        """False while a value the schedule needs is still to come (e.g. ``max_lr='auto'`` before the range test)."""
        return True

    # ---- progress ---------------------------------------------------------------------------------------------

    def targets(self, optimizer_index: int) -> bool:
        return self.optimizers is None or optimizer_index in self.optimizers

    def units(self, progress: Progress, optimizer_index: int) -> int:
        """Schedule units done (optimizer steps or epochs), less the schedule's ``start`` offset, if it has one."""
        done = progress[self._unit_field] - self._start_units.get(optimizer_index, 0)
        return done if done > 0 else 0

    def groups_changed(self, optimizer_index: int, optimizer: Optimizer) -> None:
        """The coordinator saw param groups added during fit: resolve the per-group arguments for them."""
        self.resolve_groups(optimizer_index, optimizer)

    def _resolve_window(self, trainer: pl.Trainer, run: RunLength, start: Duration) -> None:
        """Resolve the ``[start, end)`` window the schedule runs in."""
        self._resolve_start(trainer, run, start)
        self._resolve_end(trainer, run)

    def _resolve_start(self, trainer: pl.Trainer, run: RunLength, start: Duration) -> None:
        """Resolve a ``start`` offset; ``"after_warmup"`` is where the Warmup on the same optimizer reaches 1."""
        for index in range(len(trainer.optimizers)):
            if not self.targets(index):
                continue
            if start == "after_warmup":
                warmups = [
                    cb for cb in schedule_callbacks(trainer) if cb.is_warmup and cb.targets(index) and cb is not self
                ]
                if not warmups:
                    raise ValueError(
                        f"{type(self).__name__}.start='after_warmup', but no Warmup callback schedules optimizer "
                        f"{index}: add lightning_tuning.Warmup, or give `start` as a duration."
                    )
                if any(cb.interval != self.interval for cb in warmups):
                    raise ValueError(
                        f"{type(self).__name__}.start='after_warmup' needs the Warmup to count in the same unit "
                        f"(interval={self.interval!r}); set the same `interval` on both."
                    )
                self._start_units[index] = max(cb.end_units(trainer, run, index) for cb in warmups)  # type: ignore[attr-defined]
            else:
                self._start_units[index] = self._duration(start, run, "start")
                self._check_within_run(self._start_units[index], run, "start", "the schedule would never start")

    def _init_end(self, end: Duration | None) -> None:
        """``__init__``-time check of the ``end`` argument; joins the state key only when set (older checkpoints)."""
        if end is not None:
            check_duration_arg(end, f"{type(self).__name__}.end", allow_zero=False)
            self._config.update(end=end)
        self.end = end

    def _resolve_end(self, trainer: pl.Trainer, run: RunLength) -> None:
        """Resolve ``end``, the point where the schedule hands over: from there on its factor is 1 (torch's
        ``SequentialLR`` milestone: the next schedule, given ``start`` at the same point, starts from its own base)."""
        self._end_units.clear()
        if self.end is None:
            return
        for index in range(len(trainer.optimizers)):
            if not self.targets(index):
                continue
            position = self._duration(self.end, run, "end")
            begin = self._start_units.get(index, 0)
            if position <= begin:
                raise ValueError(
                    f"{type(self).__name__}.end={self.end!r} is at {self.interval} {position}, not after the "
                    f"schedule's start "
                    f"({begin}): it would never run. Give an `end` after `start`, or leave `end` out to run to the end."
                )
            self._check_within_run(position, run, "end", "the schedule would never hand over", may_be_the_end=True)
            self._end_units[index] = position

    def windowed_lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        """:meth:`lr_factor` inside the ``[start, end)`` window, 1 from ``end`` on (the coordinator's choice when an
        ``end`` is set)."""
        end = self._end_units.get(optimizer_index)
        if end is not None and progress[self._unit_field] >= end:
            return 1.0
        return self.lr_factor(progress, optimizer_index, group_index, base_lr)

    def windowed_momentum(self, progress: Progress, optimizer_index: int, group_index: int) -> float | None:
        """:meth:`momentum` inside the window; from ``end`` on, the momentum at the schedule's clock 0."""
        end = self._end_units.get(optimizer_index)
        if end is not None and progress[self._unit_field] >= end:
            return self.momentum(Progress(0, 0), optimizer_index, group_index)
        return self.momentum(progress, optimizer_index, group_index)

    def remaining(self, run: RunLength, optimizer_index: int) -> int | None:
        """Units from ``start`` to ``end`` (to the end of the run without one): the default length of schedules with
        an open end."""
        self.uses_run_length = True
        return self.span(run, optimizer_index)

    def span(self, run: RunLength, optimizer_index: int) -> int | None:
        """Units from ``start`` to ``end``, or to the end of the run without one (``None`` for an open run)."""
        total = self._end_units.get(optimizer_index)
        if total is None:
            total = run.total(self.interval)
        if total is None:
            return None
        return total - self._start_units.get(optimizer_index, 0)

    def _duration(self, value: Duration, run: RunLength | None, argument: str) -> int:
        units = resolve_duration(value, self.interval, run, f"{type(self).__name__}.{argument}")
        fraction: float | None = None
        if isinstance(value, float):
            fraction = value
        elif isinstance(value, str) and value.strip().endswith("%"):
            fraction = float(value.strip()[:-1]) / 100
        total = None if run is None else run.total(self.interval)
        self.uses_run_length = self.uses_run_length or fraction is not None
        if fraction is not None and total:
            wanted = fraction * total
            if abs(units - wanted) > 0.2 * wanted:
                self._notes.append(
                    f"{type(self).__name__}.{argument}={value!r} is {wanted:.3g} of this run's {total} "
                    f"{self.interval}s and resolves to {units}: give it in {self.interval}s if you meant another "
                    "length, or train longer."
                )
        return units

    def _check_within_run(
        self, position: int, run: RunLength, argument: str, consequence: str, may_be_the_end: bool = False
    ) -> None:
        """The one rule for points in time a config states: each must fall inside the run, or the config is refused.

        A schedule whose length is left out, or given as a fraction, always fits; one given in steps or epochs that
        the run never reaches would silently not do what the config says. ``may_be_the_end``: the run's end itself is
        allowed too (an ``end`` that hands over where the run stops).
        """
        total = run.total(self.interval)
        if total is not None and (position > total if may_be_the_end else position >= total):
            message = (
                f"{type(self).__name__}.{argument} is at {self.interval} {position}, but the run has {total} "
                f"{self.interval}s (0..{total - 1}): {consequence}. Give it as a fraction of the run (e.g. '50%'), "
                "shorten it, or train longer."
            )
            if self._manual and self.interval == "step":
                # under manual optimization an optimizer may step several times per batch (a WGAN critic): the run's
                # length in its own steps is not known before training, so this is a warning there
                self._notes.append(
                    message + " (Manual optimization: fine if this optimizer steps more than once per batch.)"
                )
                return
            raise ValueError(message)

    # ---- Lightning hooks --------------------------------------------------------------------------------------

    @cached_property
    def state_key(self) -> str:
        # The config is part of the key so that two instances of one class coexist in a checkpoint. Lightning reads
        # the key on every hook call of every callback (profiler names), about 20 times per step for three
        # schedules: built once when first asked for, then a plain instance attribute.
        return self._generate_state_key(optimizers=self.optimizers, config=repr(sorted(self._config.items())))

    def _state_key_prefix(self) -> str:
        return f"{type(self).__qualname__}{{'optimizers': {self.optimizers!r}, 'config': "

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._coordinator = LRCoordinator.attach(trainer, self)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        if self.optimizers is not None:
            out_of_range = [i for i in self.optimizers if i >= len(optimizers)]
            if out_of_range:
                raise MisconfigurationException(
                    f"{type(self).__name__}: `optimizers={self.optimizers}` names optimizer index {out_of_range[0]}, "
                    f"but configure_optimizers returned {len(optimizers)} optimizer(s): "
                    f"use indices 0..{len(optimizers) - 1}."
                )
        self._notes = []
        self.uses_run_length = False
        self._manual = not pl_module.automatic_optimization
        run = run_length(trainer)
        try:
            self.resolve(trainer, run)
            for index, optimizer in enumerate(optimizers):
                if self.targets(index):
                    self.resolve_groups(index, unwrap_optimizer(optimizer))
        except ValueError as err:
            raise MisconfigurationException(str(err)) from err
        for note in self.lint(run):
            rank_zero_warn(note)
        if self._coordinator is None:  # fit called without setup (direct hook calls in tests)
            self._coordinator = LRCoordinator.attach(trainer, self)
        self._coordinator.callback_resolved(trainer, pl_module, self)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        coordinator = self._coordinator
        if coordinator is not None:
            coordinator.begin(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        coordinator = self._coordinator
        if coordinator is not None and coordinator.is_driver(self):
            coordinator.on_train_epoch_start(trainer)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        coordinator = self._coordinator
        if coordinator is None or not coordinator.is_driver(self):
            return
        if batch_idx == 0:
            # callbacks acting at epoch start (BackboneFinetuning adds a param group, sets its LR) ran by now
            coordinator.write_all()
        if coordinator.log_lr and should_update_logs(trainer):
            coordinator.log(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        coordinator = self._coordinator
        if coordinator is not None and coordinator.is_driver(self):
            coordinator.on_train_epoch_end(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        coordinator = self._coordinator
        if coordinator is not None and coordinator.is_driver(self):
            coordinator.on_train_batch_end()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        coordinator = self._coordinator
        if coordinator is None:
            return
        self._last_steps = list(coordinator.steps)
        coordinator.detach(self)
        self._coordinator = None

    def steps_done(self, optimizer_index: int) -> int:
        """Optimizer steps that really happened (skipped AMP steps excluded) for that optimizer."""
        steps = self._steps()
        return steps[optimizer_index] if optimizer_index < len(steps) else 0

    def _steps(self) -> list[int]:
        coordinator = self._coordinator
        if coordinator is not None and coordinator.begun:
            return list(coordinator.steps)
        return list(self.restored_steps or self._last_steps)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"steps": self._steps(), "config": dict(self._config)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored_steps = [int(s) for s in state_dict.get("steps", [])]

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get("callbacks", {})
        if self.state_key in states:
            return
        # Same class and optimizers, another config: the user changed the schedule between the runs.
        candidates = [key for key in states if key.startswith(self._state_key_prefix())]
        name = type(self).__name__
        if len(candidates) != 1:
            rank_zero_warn(
                f"{name}: the checkpoint holds {'no' if not candidates else 'several'} matching {name} state(s) "
                f"for optimizers={self.optimizers}; the schedule starts from step 0 while the trainer resumes at "
                f"step {checkpoint.get('global_step')}. Resume with the callbacks the checkpoint was written with."
            )
            return
        saved = states[candidates[0]]
        old = saved.get("config", {})
        changed = {key: (old.get(key), value) for key, value in self._config.items() if old.get(key) != value}
        details = ", ".join(f"{key}: {before!r} -> {after!r}" for key, (before, after) in changed.items())
        rank_zero_warn(
            f"{name}: the checkpoint was written with a different config ({details}). Training resumes at the "
            f"checkpoint's progress with the NEW config, so the learning rate may jump at the resumed step. Resume "
            "with the original config to continue the same schedule."
        )
        self.load_state_dict(saved)


def per_group(value: float | Sequence[float], groups: int, argument: str) -> list[float]:
    """Expand a value given once or once per param group (torch's ``_format_param``).

    A value given once applies to every group, including groups added during fit.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(
                f"`{argument}` has {len(value)} values but the optimizer has {groups} param groups (groups added "
                "during fit, e.g. by BackboneFinetuning, count too): give one value, which applies to every group, "
                "or one per param group."
            )
        return [float(v) for v in value]
    return [float(value)] * groups  # type: ignore[arg-type]  # a number here; Sequence handled above


def check_positive(value: float, argument: str, owner: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        ok = False
    else:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise MisconfigurationException(f"{owner}: `{argument}={value!r}` must be a number {bound}.")


def check_duration_arg(value: Duration, argument: str, allow_zero: bool = True) -> None:
    """``__init__``-time check of a duration argument; raises ``MisconfigurationException`` naming it."""
    try:
        check_duration(value, argument)
    except ValueError as err:
        raise MisconfigurationException(str(err)) from err
    if not allow_zero and isinstance(value, int) and value == 0:
        raise MisconfigurationException(f"`{argument}=0` must be at least 1.")


def range_test_of(trainer: pl.Trainer) -> Any | None:
    """The LR range test among ``trainer.callbacks`` (anything with ``suggested_lrs``), or ``None``."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if hasattr(callback, "suggested_lrs"):
            return callback
    return None


def auto_lrs(range_test: Any | None, optimizer_index: int) -> list[float] | None:
    """The per-group learning rates the range test suggested for that optimizer, or ``None`` if none yet.

    An ``"auto"`` maximum LR (``OneCycle``, ``CyclicLR``) takes these; the range test keeps the groups' ratios.
    """
    suggested = getattr(range_test, "suggested_lrs", None)
    if isinstance(suggested, dict) and optimizer_index in suggested:
        return [float(lr) for lr in suggested[optimizer_index]]
    return None
