"""One learning-rate coordinator per trainer: the only code that writes a learning rate or a momentum.

Schedule callbacks (:class:`~lightning_tuning.callbacks._schedule.LRScheduleCallback`) hold a config and pure factor
functions of :class:`~lightning_tuning.schedules.Progress`. The coordinator, created by the first of them to start
and found by the others on the trainer, owns everything that touches the optimizers:

* one step counter per optimizer, advanced by a step post-hook (a step a ``GradScaler`` skips never calls
  ``optimizer.step``, so it is not counted);
* each param group's base LR, a float snapshot in the group key ``"lt_base_lr"`` (never torch's ``initial_lr``,
  which torch's schedulers and SWA own); the key travels with the optimizer's state in checkpoints;
* the writes: ``lr = base_lr * prod(factors)``, plateau floors last (:func:`~lightning_tuning.schedules.compose_lr`),
  in a canonical callback order so the result does not depend on the order of ``trainer.callbacks``; a tensor ``lr``
  or ``betas`` is written in place with ``fill_`` (a compiled optimizer step then never recompiles);
* when to write: after every training batch in which a scheduled optimizer stepped (so the next step, and any
  monitor, sees the next LR, while the step's own post-hooks still see the LR it used), at each epoch start, after a
  plateau decision, and under manual optimization also right before every step of every scheduled optimizer (a
  critic stepped k times per batch gets the right LR each time);
* the checks over all schedule callbacks at once: torch schedulers or SWA on the same optimizer, DeepSpeed, two
  warmups or two momentum owners on one optimizer;
* param groups that change: a group added mid-fit joins with its own LR as base; a group count that shrinks is an
  error; an LR changed by someone else between two writes becomes the new base (reported once);
* the suspension the LR range test uses, and the pure simulation behind ``preview`` and the dashboard.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, StochasticWeightAveraging
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.optim import Optimizer

from lightning_tuning._compat import batches_that_stepped
from lightning_tuning.callbacks._names import lr_names, momentum_name, unwrap_optimizer
from lightning_tuning.schedules import Progress, RunLength

if TYPE_CHECKING:
    from lightning_tuning.callbacks._schedule import LRScheduleCallback

BASE_LR_KEY = "lt_base_lr"
"""The param-group key holding the group's base learning rate (a float), which every schedule factor multiplies."""

_ATTRIBUTE = "_lightning_tuning_lr_coordinator"

MomentumKey = Literal["momentum", "betas"]


def momentum_key(optimizer: Optimizer) -> MomentumKey | None:
    """Where ``optimizer`` keeps its momentum: SGD/RMSprop ``momentum``, Adam-like ``betas[0]``."""
    if "momentum" in optimizer.defaults:
        return "momentum"
    if "betas" in optimizer.defaults:
        return "betas"
    return None


def get_momentum(group: dict[str, Any], key: str) -> float:
    return float(group["betas"][0] if key == "betas" else group["momentum"])


def set_momentum(group: dict[str, Any], key: str, value: float) -> None:
    if key == "betas":
        betas = group["betas"]
        if isinstance(betas[0], torch.Tensor):
            betas[0].fill_(value)
        else:
            group["betas"] = (value, *betas[1:])
    elif isinstance(group["momentum"], torch.Tensor):
        group["momentum"].fill_(value)
    else:
        group["momentum"] = value


def base_lr(group: dict[str, Any]) -> float:
    """A group's base LR: the snapshot once the coordinator has taken it, its current LR before."""
    value = group.get(BASE_LR_KEY, group["lr"])
    return float(value)


def set_base_lr(group: dict[str, Any], value: float) -> None:
    """Give a group a new base LR (the range test's suggestion, a batch-size scaling); schedules multiply it."""
    group[BASE_LR_KEY] = float(value)


def _holds_tensors(optimizer: Optimizer) -> bool:
    """Whether any group keeps its ``lr`` or ``betas`` as tensors (the compiled-optimizer recipe)."""
    for group in optimizer.param_groups:
        betas = group.get("betas", ())
        if isinstance(group["lr"], torch.Tensor) or any(isinstance(beta, torch.Tensor) for beta in betas):
            return True
    return False


def coordinator_for(trainer: pl.Trainer) -> LRCoordinator | None:
    """The trainer's coordinator, or ``None`` when no schedule callback is set up on it."""
    return trainer.__dict__.get(_ATTRIBUTE)


@contextmanager
def suspend_schedules(trainer: pl.Trainer, optimizers: Iterable[Optimizer]) -> Iterator[None]:
    """Within this block, no schedule counts steps of ``optimizers`` or writes their LR (the range test drives them)."""
    coordinator = coordinator_for(trainer)
    if coordinator is None:
        yield
        return
    with coordinator.suspended(optimizers):
        yield


def _factor_of(callback: LRScheduleCallback, alone: Sequence[LRScheduleCallback]) -> Callable[..., float]:
    """The factor function the plan calls for ``callback``: its plain ``lr_factor`` unless an ``end`` window or a
    warmup that runs alone applies (so the common case costs no extra call)."""
    factor = callback.windowed_lr_factor if callback.end is not None else callback.lr_factor
    waits_for = tuple(cb for cb in alone if cb is not callback)
    if not waits_for:
        return factor

    def after_warmup(progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        for warmup in waits_for:
            if warmup.is_running(progress, optimizer_index):
                return 1.0
        return factor(progress, optimizer_index, group_index, base_lr)

    return after_warmup


class _Plan:
    """Which callbacks shape one optimizer's LR, fixed for a fit (computed once, read on every step)."""

    __slots__ = (
        "factors",
        "floors",
        "group_factors",
        "groups",
        "index",
        "momentum",
        "momentum_key",
        "optimizer",
        "ready",
        "shared_factors",
        "written",
    )

    def __init__(self, index: int, optimizer: Optimizer, callbacks: Sequence[LRScheduleCallback]) -> None:
        # a canonical order makes the floating-point product independent of the order of the callbacks list
        ordered = sorted(callbacks, key=lambda cb: cb.state_key)
        self.index = index
        self.optimizer = optimizer
        self.factors = tuple(cb for cb in ordered if not cb.is_floor)
        self.floors = tuple(cb for cb in ordered if cb.is_floor)
        self.momentum = tuple(cb for cb in ordered if cb.cycles_momentum)
        self.momentum_key = momentum_key(optimizer)
        # bound methods, split once: factors that are the same for every group are computed once per write
        # a warmup that runs alone (timm's `warmup_prefix=False`) holds the other factors at 1 until it ends
        alone = tuple(cb for cb in self.factors if cb.exclusive)
        self.shared_factors = tuple(_factor_of(cb, alone) for cb in self.factors if cb.group_independent)
        self.group_factors = tuple(_factor_of(cb, alone) for cb in self.factors if not cb.group_independent)
        self.groups = 0
        self.ready = False
        # the LR last written per group, to notice another owner changing it between two writes
        self.written: list[float | None] = []

    @property
    def callbacks(self) -> tuple[LRScheduleCallback, ...]:
        return self.factors + self.floors

    def is_ready(self) -> bool:
        """Whether every callback has what it needs (``max_lr='auto'`` waits for the range test); sticky once true."""
        if not self.ready:
            self.ready = all(callback.is_ready() for callback in self.callbacks)
        return self.ready

    def shared(self, progress: Progress) -> float:
        """The product of the factors that do not depend on the group (warmup, step decays, ...)."""
        index = self.index
        product = 1.0
        for factor in self.shared_factors:
            product *= factor(progress, index, 0, 1.0)
        return product

    def compose(self, progress: Progress, group_index: int, base: float, shared: float) -> tuple[float, float | None]:
        """``lr = base * shared * prod(per-group factors)``, then the plateau floors, in the plan's canonical order."""
        index = self.index
        lr = base * shared
        for factor in self.group_factors:
            lr *= factor(progress, index, group_index, base)
        for callback in self.floors:
            scale, min_lr = callback.lr_floor(index, group_index, base)
            if scale != 1.0:  # a floor at scale 1 is max(lr, min(min_lr, lr)) = lr
                lowest = lr if lr < min_lr else min_lr  # max(lr * scale, min(min_lr, lr)) without builtin calls
                scaled = lr * scale
                lr = lowest if lowest > scaled else scaled
        momentum = None
        for callback in self.momentum:
            value = callback.windowed_momentum(progress, index, group_index)
            if value is not None:
                momentum = value
        return lr, momentum


class LRCoordinator:
    """Counts progress and writes the composed LR for every schedule callback of one trainer.

    Not a callback itself: the schedule callbacks register with it in ``setup`` and forward their hooks; the first
    registered one drives the per-epoch and per-batch work. See the module docstring for what it owns.
    """

    def __init__(self, trainer: pl.Trainer) -> None:
        self._trainer = weakref.ref(trainer)
        self.callbacks: list[LRScheduleCallback] = []
        self._resolved: set[int] = set()
        self.plans: list[_Plan | None] = []
        self.steps: list[int] = []
        self.epoch = 0
        self.prepared = False
        self.begun = False
        self.log_lr = True
        self._manual = False
        self._suspended: set[int] = set()
        self._handles: list[Any] = []
        self._warned: set[str] = set()
        self._stepped: set[int] = set()
        self._epoch_start_steps: list[int] = []

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    @classmethod
    def attach(cls, trainer: pl.Trainer, callback: LRScheduleCallback) -> LRCoordinator:
        coordinator = coordinator_for(trainer)
        if coordinator is None:
            coordinator = cls(trainer)
            trainer.__dict__[_ATTRIBUTE] = coordinator
        if callback not in coordinator.callbacks:
            coordinator.callbacks.append(callback)
        return coordinator

    def detach(self, callback: LRScheduleCallback) -> None:
        if callback in self.callbacks:
            self.callbacks.remove(callback)
        self._resolved.discard(id(callback))
        if self.callbacks:
            return
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        trainer = self._trainer()
        if trainer is not None and trainer.__dict__.get(_ATTRIBUTE) is self:
            del trainer.__dict__[_ATTRIBUTE]

    def is_driver(self, callback: LRScheduleCallback) -> bool:
        return bool(self.callbacks) and self.callbacks[0] is callback

    def callback_resolved(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, callback: LRScheduleCallback
    ) -> None:
        """Called by each schedule callback at the end of its ``on_fit_start``; the last one prepares the plan."""
        self._resolved.add(id(callback))
        if len(self._resolved) == len(self.callbacks):
            self._prepare(trainer, pl_module)

    def _prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = [unwrap_optimizer(optimizer) for optimizer in trainer.optimizers]
        self._check_strategy(trainer, optimizers)
        self._check_owners(trainer, optimizers)
        self.plans = []
        for index, optimizer in enumerate(optimizers):
            active = [cb for cb in self.callbacks if cb.targets(index)]
            self.plans.append(_Plan(index, optimizer, active) if active else None)
        self._manual = not pl_module.automatic_optimization
        self.log_lr = not any(
            isinstance(cb, LearningRateMonitor) or getattr(cb, "logs_learning_rates", False)
            for cb in trainer.callbacks  # type: ignore[attr-defined]
        )
        self.prepared = True

    def begin(self, trainer: pl.Trainer) -> None:
        """Snapshot base LRs, restore progress, hook the optimizers and write the first LR (once per fit).

        Runs at ``on_train_start``, after Lightning restored the optimizers' state from a checkpoint, so a resumed
        run keeps the base LRs it started with. The range test calls it too if it runs first.
        """
        if self.begun or not self.prepared:
            return
        self.steps = [0] * len(self.plans)
        for callback in self.callbacks:
            for index, value in enumerate(callback.restored_steps[: len(self.steps)]):
                self.steps[index] = max(self.steps[index], int(value))
            callback.restored_steps = []  # consumed: a later fit without a checkpoint starts from 0
        resuming = trainer.ckpt_path is not None
        for plan in self.plans:
            if plan is None:
                continue
            for group in plan.optimizer.param_groups:
                if BASE_LR_KEY not in group:
                    # a checkpoint of an earlier version kept the base LR in torch's key
                    legacy = group.get("initial_lr") if resuming else None
                    group[BASE_LR_KEY] = float(legacy if legacy is not None else group["lr"])
            plan.groups = len(plan.optimizer.param_groups)
            plan.written = [None] * plan.groups
            # Tensor LRs are torch's recipe for a compiled optimizer step: keep the hooks out of the graph (dynamo
            # would guard on the step counters and recompile every step). Costs ~6 us a call, so only then.
            opaque = _holds_tensors(plan.optimizer)
            after, before = self._after_step_hook(plan), self._before_step_hook(plan)
            if opaque:
                after, before = torch.compiler.disable(after), torch.compiler.disable(before)
            self._handles.append(plan.optimizer.register_step_post_hook(after))
            if self._manual:
                self._handles.append(plan.optimizer.register_step_pre_hook(before))
        self.epoch = trainer.current_epoch
        self.begun = True
        self.write_all()

    def _after_step_hook(self, plan: _Plan) -> Any:
        index = plan.index
        suspended = self._suspended
        steps = self.steps
        stepped = self._stepped

        def after_step(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
            if id(optimizer) not in suspended:
                steps[index] += 1
                stepped.add(index)

        return after_step

    def _before_step_hook(self, plan: _Plan) -> Any:
        suspended = self._suspended
        write = self.write

        def before_step(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
            if id(optimizer) not in suspended:
                write(plan)

        return before_step

    # ---- writing ------------------------------------------------------------------------------------------------

    def reset_written(self) -> None:
        """Forget the LRs last written, so the next write does not take changes made up to now for another owner's
        (a caller that sets base LRs itself, like the range test applying its suggestion, calls this)."""
        for plan in self.plans:
            if plan is not None:
                plan.written = [None] * plan.groups

    def write_all(self) -> None:
        for plan in self.plans:
            if plan is not None:
                self.write(plan)

    def on_train_batch_end(self) -> None:
        """Write the next LR of the optimizers that stepped in this batch (none, while accumulating gradients)."""
        stepped = self._stepped
        if stepped:
            plans = self.plans
            for index in stepped:
                plan = plans[index]
                if plan is not None:
                    self.write(plan)
            stepped.clear()

    def write_optimizer(self, optimizer_index: int) -> None:
        plan = self.plans[optimizer_index] if optimizer_index < len(self.plans) else None
        if plan is not None:
            self.write(plan)

    def write(self, plan: _Plan) -> None:
        """Write the composed LR (and momentum) of every group of one optimizer at the current progress."""
        optimizer = plan.optimizer
        if not self.begun or id(optimizer) in self._suspended or not plan.is_ready():
            return
        groups = optimizer.param_groups
        if len(groups) != plan.groups:
            self._groups_changed(plan)
        progress = Progress(self.steps[plan.index], self.epoch)
        shared = plan.shared(progress)
        key = plan.momentum_key
        written = plan.written
        for group_index, group in enumerate(groups):
            current = group["lr"]
            is_tensor = isinstance(current, torch.Tensor)
            last = written[group_index]
            if last is not None and not is_tensor and current != last:
                self._rebase(plan, group_index, group, last)
            lr, momentum = plan.compose(progress, group_index, group[BASE_LR_KEY], shared)
            if is_tensor:
                current.fill_(lr)
            else:
                group["lr"] = lr
                written[group_index] = lr
            if momentum is not None and key is not None:
                set_momentum(group, key, momentum)

    def _rebase(self, plan: _Plan, group_index: int, group: dict[str, Any], last: float) -> None:
        """Someone else changed the LR since the last write: their LR becomes the base the schedules multiply."""
        current = float(group["lr"])
        old_base = group[BASE_LR_KEY]
        group[BASE_LR_KEY] = old_base * current / last if last else current
        key = f"rebase/{plan.index}"
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(
                f"lightning_tuning: the learning rate of optimizer {plan.index} ({type(plan.optimizer).__name__}), "
                f"param group {group_index}, was changed outside the schedule callbacks ({last:.6g} -> "
                f"{current:.6g}), e.g. by a scheduler stepped in the module or another callback. The schedules now "
                "multiply that LR (new base LR "
                f"{group[BASE_LR_KEY]:.6g}). If that is not what you want, let only one of them own the LR."
            )

    def _groups_changed(self, plan: _Plan) -> None:
        groups = plan.optimizer.param_groups
        if len(groups) < plan.groups:
            raise MisconfigurationException(
                f"Optimizer {plan.index} ({type(plan.optimizer).__name__}) had {plan.groups} param groups and now has "
                f"{len(groups)}: the schedule callbacks {[type(cb).__name__ for cb in plan.callbacks]} keep per-group "
                "state (plateau reductions, per-group arguments) that cannot follow a removed group. Add param groups "
                "during fit if you must, but do not remove them."
            )
        added = len(groups) - plan.groups
        for group in groups[plan.groups :]:
            group.setdefault(BASE_LR_KEY, float(group["lr"]))
        plan.written.extend([None] * added)
        plan.groups = len(groups)
        for callback in plan.callbacks:
            try:
                callback.groups_changed(plan.index, plan.optimizer)
            except ValueError as err:
                raise MisconfigurationException(str(err)) from err
        rank_zero_info(
            f"lightning_tuning: optimizer {plan.index} gained {added} param group(s) during fit; each joins the "
            "schedules with its own LR as base."
        )

    @contextmanager
    def suspended(self, optimizers: Iterable[Optimizer]) -> Iterator[None]:
        ids = {id(unwrap_optimizer(optimizer)) for optimizer in optimizers}
        ids -= self._suspended
        self._suspended |= ids
        try:
            yield
        finally:
            self._suspended -= ids
            # what the suspended driver left in the groups is not another owner's LR: the next write overwrites it
            for plan in self.plans:
                if plan is not None and id(plan.optimizer) in ids:
                    plan.written = [None] * plan.groups

    # ---- per-epoch and per-batch work (driven by the first registered callback) --------------------------------

    def on_train_epoch_start(self, trainer: pl.Trainer) -> None:
        self._check_torch_schedulers(trainer, mid_fit=True)
        self.epoch = trainer.current_epoch
        self._epoch_start_steps = list(self.steps)
        self.write_all()

    def on_train_epoch_end(self, trainer: pl.Trainer) -> None:
        """Under manual optimization, check once that the run-relative lengths assumed one step per batch rightly."""
        if not self._manual or "steps-per-batch" in self._warned or not self._epoch_start_steps:
            return
        self._warned.add("steps-per-batch")
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        for plan in self.plans:
            if plan is None or not batches:
                continue
            taken = self.steps[plan.index] - self._epoch_start_steps[plan.index]
            relative = [type(cb).__name__ for cb in plan.callbacks if cb.uses_run_length]
            if relative and taken != batches:
                rank_zero_warn(
                    f"Optimizer {plan.index} ({type(plan.optimizer).__name__}) took {taken} steps in {batches} batches "
                    f"of this epoch, and {relative} took their length from the run assuming one step per batch "
                    "(manual optimization: Lightning's run length counts batches, or all optimizers' steps together "
                    "under max_steps). Those schedules will end at the wrong time: give their lengths in steps of "
                    "this optimizer."
                )

    def log(self, trainer: pl.Trainer) -> None:
        """Log the LR (and any cycled momentum) of the scheduled optimizers, under LearningRateMonitor's names."""
        if not self.log_lr or not trainer.loggers:
            return
        names = lr_names(trainer.optimizers)
        metrics: dict[str, float] = {}
        for plan, plan_names in zip(self.plans, names, strict=True):
            if plan is None:
                continue
            key = plan.momentum_key if plan.momentum else None
            for group, name in zip(plan.optimizer.param_groups, plan_names, strict=False):
                metrics[name] = float(group["lr"])
                if key is not None:
                    metrics[momentum_name(name)] = get_momentum(group, key)
        step = batches_that_stepped(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    # ---- checks ------------------------------------------------------------------------------------------------

    def _check_strategy(self, trainer: pl.Trainer, optimizers: Sequence[Any]) -> None:
        strategy = type(trainer.strategy).__name__
        if "DeepSpeed" in strategy or any(not hasattr(opt, "register_step_post_hook") for opt in optimizers):
            raise MisconfigurationException(
                f"The lightning_tuning schedule callbacks do not support the {strategy} strategy: its optimizer "
                "wrappers step outside torch's optimizer hooks, which the callbacks count steps with. Use DDP or FSDP "
                "(`--trainer.strategy ddp|fsdp`), or DeepSpeed's own scheduler config."
            )

    def _check_owners(self, trainer: pl.Trainer, optimizers: Sequence[Optimizer]) -> None:
        names = [type(cb).__name__ for cb in self.callbacks]
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, StochasticWeightAveraging):
                raise MisconfigurationException(
                    "StochasticWeightAveraging and the lightning_tuning schedule callbacks "
                    f"{names} would both own the learning rate: SWA replaces the optimizer's LR with its own "
                    "annealing to `swa_lrs` from `swa_epoch_start`, and the schedules would overwrite it after every "
                    "step. Remove the schedule callbacks from a run with SWA (SWA's annealing is its schedule), or "
                    "drop SWA, or restrict the schedules with `optimizers=[...]` to optimizers SWA does not use."
                )
        self._check_torch_schedulers(trainer, mid_fit=False)
        for index in range(len(optimizers)):
            active = [cb for cb in self.callbacks if cb.targets(index)]
            for attribute, what, fix in (
                ("cycles_momentum", "cycle its momentum", "Set `cycle_momentum=False` on all but one."),
                ("is_warmup", "warm it up", "Keep one Warmup per optimizer (`optimizers=[...]` picks which)."),
            ):
                owners = [type(cb).__name__ for cb in active if getattr(cb, attribute)]
                if len(owners) > 1:
                    raise MisconfigurationException(
                        f"Optimizer {index} ({type(optimizers[index]).__name__}): {owners} all {what}; only one "
                        f"callback may. {fix}"
                    )

    def _check_torch_schedulers(self, trainer: pl.Trainer, mid_fit: bool) -> None:
        configs = trainer.lr_scheduler_configs
        if not configs:
            return
        names = [type(cb).__name__ for cb in self.callbacks]
        for config in configs:
            scheduled = unwrap_optimizer(getattr(config.scheduler, "optimizer", None))
            for index, optimizer in enumerate(trainer.optimizers):
                if unwrap_optimizer(optimizer) is not scheduled or not any(cb.targets(index) for cb in self.callbacks):
                    continue
                when = "was added during fit" if mid_fit else "comes from configure_optimizers or `--lr_scheduler`"
                raise MisconfigurationException(
                    f"Optimizer {index} ({type(optimizer).__name__}) has a learning-rate scheduler "
                    f"({type(config.scheduler).__name__}) that {when}, and the callbacks {names} schedule its "
                    "learning rate too: the two would overwrite each other. Remove the scheduler and express it as a "
                    "lightning_tuning callback (StepLR -> StepDecay, CosineAnnealingLR -> CosineAnnealing, "
                    "OneCycleLR -> OneCycle, ReduceLROnPlateau -> PlateauDecay, ...), or restrict the callbacks to "
                    "other optimizers with `optimizers=[...]`."
                )

    # ---- simulation ---------------------------------------------------------------------------------------------

    def simulate(self, trainer: pl.Trainer, run: RunLength, total_steps: int) -> dict[str, list[float]]:
        """The planned LR (and cycled momentum) of every scheduled group at each of ``total_steps`` optimizer steps.

        A pure evaluation of the callbacks' factors: nothing is written. Keys are LearningRateMonitor's names.
        """
        optimizers = [unwrap_optimizer(opt) for opt in trainer.optimizers]
        names = lr_names(optimizers)
        steps_per_epoch = run.steps_per_epoch or max(total_steps, 1)
        columns: dict[str, list[float]] = {}
        for plan, plan_names in zip(self.plans, names, strict=True):
            if plan is None or not plan.is_ready():
                continue
            bases = [base_lr(group) for group in plan.optimizer.param_groups]
            lrs: list[list[float]] = [[] for _ in bases]
            momenta: list[list[float]] = [[] for _ in bases]
            for step in range(total_steps):
                progress = Progress(step, step // steps_per_epoch)
                shared = plan.shared(progress)
                for group_index, base in enumerate(bases):
                    lr, momentum = plan.compose(progress, group_index, base, shared)
                    lrs[group_index].append(lr)
                    if momentum is not None:
                        momenta[group_index].append(momentum)
            for name, group_lrs, group_momenta in zip(plan_names, lrs, momenta, strict=False):
                columns[name] = group_lrs
                if group_momenta:
                    columns[momentum_name(name)] = group_momenta
        return columns
