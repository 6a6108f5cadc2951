"""The glue every learning-rate schedule callback shares: progress counting, composition and writing the LR.

How it works, once for all schedule callbacks:

* Each callback counts the optimizer steps that really happened, per optimizer, with a step post-hook on the
  optimizer. A step that a 16-bit ``GradScaler`` skips never calls ``optimizer.step``, so it is not counted.
* The learning rate of every param group is a pure function of that progress (and of the epoch):
  ``lr = initial_lr * prod(factor of each callback)``, with plateau reductions applied last
  (:func:`lightning_tuning.schedules.compose_lr`). The result does not depend on the order of the callbacks.
* The first schedule callback in ``trainer.callbacks`` (the leader) writes the composed LR into the optimizer:
  at the start of training and of each epoch, after each batch (so the next step and any monitor read the right
  value), and, under manual optimization (several optimizers stepped at will), in a step pre-hook right before every
  ``optimizer.step``. It also logs the LR (and momentum, where a callback sets it).
* Checkpoints hold the step counts and the callback's config; resuming restores progress, and with it the LR.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch.optim import Optimizer
from typing_extensions import override

from lightning_tuning.callbacks._loss_watch import NonFiniteLossWatch
from lightning_tuning.schedules import RunLength, compose_lr
from lightning_tuning.schedules.durations import Duration, Interval, check_duration, resolve_duration

_SUSPENDED: weakref.WeakSet[Optimizer] = weakref.WeakSet()


@contextmanager
def suspend_schedules(optimizers: Iterable[Optimizer]) -> Iterator[None]:
    """Within this block, schedule callbacks neither count steps of nor write the LR into ``optimizers``.

    The LR range test uses it to drive the optimizer itself without advancing any schedule.
    """
    optimizers = list(optimizers)
    _SUSPENDED.update(optimizers)
    try:
        yield
    finally:
        for optimizer in optimizers:
            _SUSPENDED.discard(optimizer)


def schedule_callbacks(trainer: pl.Trainer) -> list[LRScheduleCallback]:
    """The schedule callbacks of ``trainer`` in list order."""
    return [cb for cb in trainer.callbacks if isinstance(cb, LRScheduleCallback)]  # type: ignore[attr-defined]


def momentum_key(optimizer: Optimizer) -> Literal["momentum", "betas"] | None:
    """Where ``optimizer`` keeps its momentum: SGD/RMSprop ``momentum``, Adam-like ``betas[0]``."""
    if "momentum" in optimizer.defaults:
        return "momentum"
    if "betas" in optimizer.defaults:
        return "betas"
    return None


def set_momentum(group: dict[str, Any], key: str, value: float) -> None:
    if key == "betas":
        group["betas"] = (value, *group["betas"][1:])
    else:
        group["momentum"] = value


def get_momentum(group: dict[str, Any], key: str) -> float:
    return float(group["betas"][0] if key == "betas" else group["momentum"])


def run_length(trainer: pl.Trainer) -> RunLength:
    """The run's length in optimizer steps, as Lightning estimates it (this sets up the train dataloader)."""
    total = trainer.estimated_stepping_batches
    batches = trainer.num_training_batches
    steps_per_epoch = None
    if batches != float("inf") and batches > 0:
        accumulate = max(1, trainer.accumulate_grad_batches)
        steps_per_epoch = max(1, -(-int(batches) // accumulate))
    return RunLength(total_steps=None if total == float("inf") else int(total), steps_per_epoch=steps_per_epoch)


def optimizer_names(optimizers: Sequence[Optimizer]) -> list[str]:
    """Stable names for logging: the class name, suffixed with its index where several share it."""
    classes = [type(opt).__name__ for opt in optimizers]
    return [name if classes.count(name) == 1 else f"{name}-{index}" for index, name in enumerate(classes)]


class _OptimizerPlan(NamedTuple):
    """Which callbacks shape one optimizer's LR, fixed for the length of a fit (computed once, used every step)."""

    callbacks: tuple[LRScheduleCallback, ...]
    factors: tuple[LRScheduleCallback, ...]
    floors: tuple[LRScheduleCallback, ...]
    momentum: tuple[LRScheduleCallback, ...]
    momentum_key: Literal["momentum", "betas"] | None


# Rebuilt whenever a schedule callback attaches to or detaches from a trainer; read on every optimizer step.
_PLANS: weakref.WeakKeyDictionary[pl.Trainer, list[_OptimizerPlan | None]] = weakref.WeakKeyDictionary()


def _plans(trainer: pl.Trainer) -> list[_OptimizerPlan | None]:
    plans = _PLANS.get(trainer)
    if plans is None:
        callbacks = [cb for cb in schedule_callbacks(trainer) if cb._attached]
        plans = []
        for index, optimizer in enumerate(trainer.optimizers):
            # A canonical order makes the floating-point product independent of the order of the callbacks list.
            active = tuple(sorted((cb for cb in callbacks if cb.targets(index)), key=lambda cb: cb._sort_key))
            plans.append(
                _OptimizerPlan(
                    callbacks=active,
                    factors=tuple(cb for cb in active if not cb.is_floor),
                    floors=tuple(cb for cb in active if cb.is_floor),
                    momentum=tuple(cb for cb in active if cb.cycles_momentum),
                    momentum_key=momentum_key(optimizer),
                )
                if active
                else None
            )
        _PLANS[trainer] = plans
    return plans


def apply_schedules(trainer: pl.Trainer, optimizer_index: int | None = None) -> None:
    """Write the composed LR (and momentum) of every scheduled optimizer, or just of ``optimizer_index``."""
    plans = _plans(trainer)
    optimizers = trainer.strategy.optimizers
    indices = range(len(plans)) if optimizer_index is None else (optimizer_index,)
    for index in indices:
        plan = plans[index]
        optimizer = optimizers[index]
        if plan is None or optimizer in _SUSPENDED or not all(cb.is_ready(trainer) for cb in plan.callbacks):
            continue
        key = plan.momentum_key
        for group_index, group in enumerate(optimizer.param_groups):
            base_lr = group["initial_lr"]
            factors = [cb.lr_factor(trainer, index, group_index, base_lr) for cb in plan.factors]
            floors = [cb.lr_floor(trainer, index, group_index, base_lr) for cb in plan.floors]
            group["lr"] = compose_lr(base_lr, factors, floors)
            if key is not None:
                for cb in plan.momentum:
                    momentum = cb.momentum(trainer, index, group_index)
                    if momentum is not None:
                        set_momentum(group, key, momentum)


class LRScheduleCallback(Callback):
    """Base class of the learning-rate schedule callbacks; see the module docstring for the mechanics.

    Subclasses implement :meth:`lr_factor` (and :meth:`momentum` where they cycle it), resolve their durations in
    :meth:`resolve`, and list their config in ``self._config`` (plain values, compared on resume).

    Args:
        interval: what one unit of the schedule is: an optimizer step (``"step"``) or an epoch (``"epoch"``).
        optimizers: indices of the optimizers (in ``configure_optimizers`` order) this schedule applies to;
            ``None`` for all.
    """

    is_floor = False
    is_warmup = False
    cycles_momentum = False

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
        self.optimizers = None if optimizers is None else list(optimizers)
        self._config: dict[str, Any] = {"interval": interval, "optimizers": self.optimizers}
        self._steps: list[int] = []
        self._start_units: dict[int, int] = {}
        self._simulated_epoch: int | None = None
        self._sort_key = ""
        self._handles: list[Any] = []
        self._attached = False
        self._leader = False
        self._loss_watch = NonFiniteLossWatch()

    # ---- what subclasses provide -------------------------------------------------------------------------------

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        """Turn durations into schedule units and check they fit the run. Raise ``ValueError`` with the argument."""

    def lr_factor(self, trainer: pl.Trainer, optimizer_index: int, group_index: int, base_lr: float) -> float:
        """This schedule's multiplier of ``base_lr`` for the given group at the current progress."""
        raise NotImplementedError

    def lr_floor(
        self, trainer: pl.Trainer, optimizer_index: int, group_index: int, base_lr: float
    ) -> tuple[float, float]:
        """For plateau-like schedules (``is_floor``): ``(scale, min_lr)`` applied after all factors."""
        raise NotImplementedError

    def momentum(self, trainer: pl.Trainer, optimizer_index: int, group_index: int) -> float | None:
        """The momentum (or Adam beta1) this schedule sets, or ``None`` to leave it alone."""
        return None

    def lint(self, trainer: pl.Trainer, run: RunLength) -> list[str]:
        """Known mistakes in this schedule for this run (shown by the preview); empty when none."""
        return []

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
        if total is None or end >= total:
            return []
        return [
            f"{type(self).__name__} ends after {end} of the run's {total} {self.interval}s; for the last "
            f"{total - end} the LR {after}. Leave its length out to span the whole run."
        ]

    def is_ready(self, trainer: pl.Trainer) -> bool:
        """False while a value the schedule needs is still to come (e.g. ``max_lr='auto'`` before the range test)."""
        return True

    # ---- progress ---------------------------------------------------------------------------------------------

    def targets(self, optimizer_index: int) -> bool:
        return self.optimizers is None or optimizer_index in self.optimizers

    def steps_done(self, optimizer_index: int) -> int:
        """Optimizer steps that really happened (skipped AMP steps excluded) for that optimizer."""
        return self._steps[optimizer_index] if optimizer_index < len(self._steps) else 0

    def progress(self, trainer: pl.Trainer, optimizer_index: int) -> int:
        """Schedule units done (optimizer steps or epochs), less the schedule's ``start`` offset, if it has one."""
        if self.interval == "epoch":
            done = trainer.current_epoch if self._simulated_epoch is None else self._simulated_epoch
        else:
            done = self.steps_done(optimizer_index)
        return max(0, done - self._start_units.get(optimizer_index, 0))

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
                ends = [cb.end_units(trainer, run, index) for cb in warmups]
                if any(cb.interval != self.interval for cb in warmups):
                    raise ValueError(
                        f"{type(self).__name__}.start='after_warmup' needs the Warmup to count in the same unit "
                        f"(interval={self.interval!r}); set the same `interval` on both."
                    )
                self._start_units[index] = max(ends)
            else:
                self._start_units[index] = self._duration(start, run, "start")

    def remaining(self, run: RunLength, optimizer_index: int) -> int | None:
        """Units of the run left after ``start``, the default length of schedules with an open end."""
        total = run.total(self.interval)
        if total is None:
            return None
        return total - self._start_units.get(optimizer_index, 0)

    def _duration(self, value: Duration, run: RunLength | None, argument: str) -> int:
        return resolve_duration(value, self.interval, run, f"{type(self).__name__}.{argument}")

    def _is_leader(self, trainer: pl.Trainer) -> bool:
        if self._attached:
            return self._leader
        callbacks = schedule_callbacks(trainer)
        return bool(callbacks) and callbacks[0] is self

    # ---- Lightning hooks --------------------------------------------------------------------------------------

    @property
    @override
    def state_key(self) -> str:
        # The config is part of the key so that two instances of one class coexist in a checkpoint.
        return self._generate_state_key(optimizers=self.optimizers, config=repr(sorted(self._config.items())))

    def _state_key_prefix(self) -> str:
        return f"{type(self).__qualname__}{{'optimizers': {self.optimizers!r}, 'config': "

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
        self._check_ownership(trainer)
        try:
            self.resolve(trainer, run_length(trainer))
        except ValueError as err:
            raise MisconfigurationException(str(err)) from err
        if len(self._steps) < len(optimizers):
            self._steps += [0] * (len(optimizers) - len(self._steps))
        for index, optimizer in enumerate(optimizers):
            if not self.targets(index):
                continue
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
            self._handles.append(optimizer.register_step_post_hook(self._make_counter(index)))
            # With automatic optimization (one optimizer) the LR written after each batch is already the next step's:
            # a pre-step hook would redo that work on every step. Manual optimization steps when it likes.
            if self._is_leader(trainer) and not pl_module.automatic_optimization:
                self._handles.append(optimizer.register_step_pre_hook(self._make_applier(trainer, index)))
        # Computed once: apply_schedules runs every step and sorts by it.
        self._sort_key = self.state_key
        self._leader = self._is_leader(trainer)
        self._attached = True
        _PLANS.pop(trainer, None)

    def _make_counter(self, optimizer_index: int) -> Any:
        def count_step(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
            if optimizer not in _SUSPENDED:
                self._steps[optimizer_index] += 1

        return count_step

    def _make_applier(self, trainer: pl.Trainer, optimizer_index: int) -> Any:
        trainer_ref = weakref.ref(trainer)

        def apply_before_step(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
            live_trainer = trainer_ref()
            if live_trainer is not None:
                apply_schedules(live_trainer, optimizer_index)

        return apply_before_step

    def _check_ownership(self, trainer: pl.Trainer) -> None:
        mine = [type(cb).__name__ for cb in schedule_callbacks(trainer)]
        for config in trainer.lr_scheduler_configs:
            scheduler_optimizer = getattr(config.scheduler, "optimizer", None)
            for index, optimizer in enumerate(trainer.optimizers):
                if optimizer is scheduler_optimizer and self.targets(index):
                    raise MisconfigurationException(
                        f"Optimizer {index} ({type(optimizer).__name__}) has a learning-rate scheduler from "
                        f"configure_optimizers or `--lr_scheduler` ({type(config.scheduler).__name__}), and the "
                        f"callbacks {mine} schedule its learning rate too: the two would overwrite each other. "
                        "Remove the scheduler from configure_optimizers/`--lr_scheduler` and express it as a "
                        "lightning_tuning callback (StepLR -> StepDecay, CosineAnnealingLR -> CosineAnnealing, "
                        "OneCycleLR -> OneCycle, ReduceLROnPlateau -> PlateauDecay, ...), or restrict the callbacks "
                        "to other optimizers with `optimizers=[...]`."
                    )
        if self.cycles_momentum and self._is_leader(trainer):
            for index in range(len(trainer.optimizers)):
                owners = [
                    type(cb).__name__ for cb in schedule_callbacks(trainer) if cb.cycles_momentum and cb.targets(index)
                ]
                if len(owners) > 1:
                    raise MisconfigurationException(
                        f"Optimizer {index}: {owners} all cycle its momentum; only one callback may. "
                        "Set `cycle_momentum=False` on all but one."
                    )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._is_leader(trainer):
            apply_schedules(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._is_leader(trainer):
            apply_schedules(trainer)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._is_leader(trainer) and trainer._logger_connector.should_update_logs:
            self._log_values(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._is_leader(trainer):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if isinstance(loss, torch.Tensor):
                problem = self._loss_watch.update(loss, trainer.global_step)
                if problem is None and self._loss_watch.pending and trainer._logger_connector.should_update_logs:
                    problem = self._loss_watch.flush(trainer.global_step)
                if problem is not None:
                    warn_non_finite_loss(trainer, problem)
            apply_schedules(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._is_leader(trainer) and self._loss_watch.pending:
            problem = self._loss_watch.flush(trainer.global_step)
            if problem is not None:
                warn_non_finite_loss(trainer, problem)

    def _log_values(self, trainer: pl.Trainer) -> None:
        if not trainer.loggers:
            return
        metrics: dict[str, float] = {}
        names = optimizer_names(trainer.optimizers)
        for index, (plan, optimizer) in enumerate(zip(_plans(trainer), trainer.optimizers, strict=True)):
            if plan is None:
                continue
            key = plan.momentum_key
            log_momentum = key is not None and bool(plan.momentum)
            for group_index, group in enumerate(optimizer.param_groups):
                metrics[f"lr/{names[index]}/pg{group_index}"] = float(group["lr"])
                if log_momentum:
                    metrics[f"momentum/{names[index]}/pg{group_index}"] = get_momentum(group, key)  # type: ignore[arg-type]
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._attached = False
        _PLANS.pop(trainer, None)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self._steps), "config": dict(self._config)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._steps = [int(s) for s in state_dict.get("steps", [])]

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


def warn_non_finite_loss(trainer: pl.Trainer, problem: str) -> None:
    """Warn about a NaN/inf training loss, with where it happened and the learning rates."""
    lrs = "; ".join(
        f"{name}: " + ", ".join(f"{group['lr']:.4g}" for group in optimizer.param_groups)
        for name, optimizer in zip(optimizer_names(trainer.optimizers), trainer.optimizers, strict=True)
    )
    rank_zero_warn(
        f"{problem} (batch {trainer.fit_loop.epoch_loop.batch_idx} of epoch {trainer.current_epoch}), trained with "
        f"learning rate(s) {lrs}. "
        "A learning rate too high for this point of the schedule is the usual cause: lower the peak LR, lengthen "
        "the warmup, or run `python -m lightning_tuning lr_find` to pick one."
    )


def per_group(value: float | Sequence[float], groups: int, argument: str) -> list[float]:
    """Expand a value given once or once per param group (torch's ``_format_param``)."""
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(
                f"`{argument}` has {len(value)} values but the optimizer has {groups} param groups: "
                "give one value, or one per param group."
            )
        return [float(v) for v in value]
    return [float(value)] * groups


def check_positive(value: float, argument: str, owner: str, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
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


def auto_lrs(trainer: pl.Trainer, optimizer_index: int) -> list[float] | None:
    """The per-group learning rates an LR range test in ``trainer.callbacks`` suggested, or ``None`` if none yet.

    An ``"auto"`` maximum LR (``OneCycle``, ``CyclicLR``) takes these; the range test keeps the groups' ratios.
    """
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        suggested = getattr(callback, "suggested_lrs", None)
        if isinstance(suggested, dict) and optimizer_index in suggested:
            return [float(lr) for lr in suggested[optimizer_index]]
    return None


def has_range_test(trainer: pl.Trainer) -> bool:
    return any(hasattr(callback, "suggested_lrs") for callback in trainer.callbacks)  # type: ignore[attr-defined]
