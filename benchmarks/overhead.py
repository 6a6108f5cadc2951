"""Per-step cost of this pack's LR coordinator on the MNIST-1D CNN, against bare Lightning, torch and timm schedulers.

Every variant trains ``MNIST1DConvNet`` with ONE ``AdamW(lr=3e-3)`` of TWO param groups (weights with weight decay,
biases without: the usual split), batch 100, a ``TensorBoardLogger`` with ``log_every_n_steps=10``, validation every
epoch, no checkpointing/progress bar:

* ``bare``: constant LR, no schedule, no LR logging;
* ``pack``: ``Warmup("5%")`` + ``CosineAnnealing(start="after_warmup")`` + ``PlateauDecay(monitor="val_loss",
  factor=0.5, patience=2)`` + ``TuningDashboard()`` (the pack logs the LR itself);
* ``pack_no_dashboard``: the same without ``TuningDashboard`` (to attribute the cost);
* ``torch``: the same warmup + cosine as ``SequentialLR(LinearLR, CosineAnnealingLR)`` in ``configure_optimizers``
  with ``interval: "step"``, plus Lightning's ``LearningRateMonitor(logging_interval="step")``. ``ReduceLROnPlateau``
  cannot be a member of a ``SequentialLR`` (its ``step`` needs the metric), so the torch side runs it as a SECOND
  scheduler config on the same optimizer (``interval: "epoch"``, ``monitor: "val_loss"``, same factor/patience),
  stepped by Lightning after each validation epoch: the same work per epoch as the pack's plateau, though the two
  torch schedulers do not compose the way the pack's callbacks do (each overwrites what the other wrote);
* ``timm`` (only where timm's scheduler can be loaded): timm's ``CosineLRScheduler(warmup_t=..., t_in_epochs=False)``
  stepped per optimizer step with ``step_update`` from ``lr_scheduler_step``, plus ``LearningRateMonitor``. timm's
  top-level package imports torchvision (not installable next to this torch), so only ``timm/scheduler`` is loaded,
  unmodified, from the wheel given by ``--timm`` (or ``$TIMM_WHEEL``): ``pip download --no-deps timm -d /tmp/timm_dl``.

Each run is instrumented (see :class:`Attribution`): the CPU time of the training thread (``time.thread_time``, not
inflated while other processes hold the CPU) and the wall time inside the tool's own code are summed over the fit,
nested calls counted once, and split into per-step and one-time work. For the pack that is, patched on the
classes for the duration of the run: every hook the schedule callbacks and ``TuningDashboard`` define (and their
``state_key``, which Lightning reads on every hook call), ``LRCoordinator.write``/``on_train_batch_end``/
``on_train_epoch_start``/``on_train_epoch_end``/``log``/``begin``, and the step pre/post-hook closures that
``LRCoordinator._before_step_hook``/``_after_step_hook`` return. For torch/timm: ``LearningRateMonitor``'s hooks (and
``state_key``) and Lightning's ``_TrainingEpochLoop._update_learning_rates``, which calls the schedulers' ``step``.
The timers' own cost per timed call is measured in the same process and subtracted ("net"). torch runs with one
intra-op thread by default (``--threads``): on a shared 2-core machine two threads mostly wait for each other.

The same runs give the end-to-end time per step: wall time between the ``on_train_batch_start`` of batch ``skip``
and of the last batch, divided by the steps in between (the whole loop). Variants run interleaved (A,B,C,D then
D,C,B,A, ...) in one process; medians and min-max over the rounds.

A micro-benchmark times, in a tight loop on the optimizer of a finished pack fit, the coordinator's per-step work
(the step post-hook + ``LRCoordinator.on_train_batch_end``, which calls ``write(plan)``) against ``scheduler.step()``
of the torch ``SequentialLR`` on an optimizer of the same two groups, interleaved.

Run: ``python benchmarks/overhead.py`` (about 15 min on a quiet 2-core machine) or ``--quick`` (about 2 min);
results go to ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import glob
import inspect
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import machine_header, make_step_timer, md_table, quiet, quiet_trainer, write_results
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from torch.optim import lr_scheduler

from lightning_tuning import CosineAnnealing, PlateauDecay, TuningDashboard, Warmup
from lightning_tuning.callbacks._coordinator import LRCoordinator, coordinator_for
from lightning_tuning.demos import MNIST1DConvNet, MNIST1DDataModule

quiet()

WARMUP_FRACTION = 0.05
PLATEAU = {"factor": 0.5, "patience": 2}
ONE_TIME_HOOKS = {"setup", "teardown", "on_fit_start", "on_fit_end", "on_train_start", "on_train_end", "begin"}


def load_timm_cosine(wheel: str | None) -> tuple[type | None, str]:
    """timm's ``CosineLRScheduler`` and how it was loaded, or ``(None, why not)``."""
    try:
        import timm  # type: ignore[import-not-found]
        from timm.scheduler import CosineLRScheduler  # type: ignore[import-not-found]

        return CosineLRScheduler, f"timm {timm.__version__} (installed)"
    except ImportError as err:
        reason = f"`import timm` fails here: {err}"
    candidates = [wheel] if wheel else sorted(glob.glob("/tmp/timm_dl/timm-*.whl"))
    if not candidates or not os.path.exists(candidates[-1]):
        return None, f"not measured: {reason}, and no timm wheel was given (--timm)"
    path = candidates[-1]
    # Register an empty `timm` package whose path is the wheel's `timm/` folder, so `timm/__init__.py` (which pulls
    # in timm.models -> torchvision) never runs; `timm.scheduler` itself needs only torch and numpy.
    for name in [m for m in sys.modules if m == "timm" or m.startswith("timm.")]:
        del sys.modules[name]
    stub = types.ModuleType("timm")
    stub.__path__ = [os.path.join(path, "timm")]  # zipimport reads pure-Python wheels in place
    sys.modules["timm"] = stub
    try:
        from timm.scheduler import CosineLRScheduler

        return (
            CosineLRScheduler,
            f"`timm.scheduler` from {os.path.basename(path)} (package `__init__` bypassed; {reason})",
        )
    except ImportError as err:
        return None, f"not measured: {reason}; timm.scheduler alone: {err}"


def two_groups(module: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """One AdamW with two param groups: weights (ndim > 1) with weight decay, biases and norms without."""
    decay = [p for p in module.parameters() if p.ndim > 1]
    no_decay = [p for p in module.parameters() if p.ndim <= 1]
    return torch.optim.AdamW(
        [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, weight_decay=weight_decay
    )


class TwoGroupNet(MNIST1DConvNet):
    """The demo CNN with one AdamW of two param groups (the pack's variants and ``bare``)."""

    def configure_optimizers(self) -> Any:
        return two_groups(self, self.lr, self.weight_decay)


def warmup_steps(total_steps: int) -> int:
    return max(1, round(total_steps * WARMUP_FRACTION))


def torch_warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> lr_scheduler.SequentialLR:
    warmup = warmup_steps(total_steps)
    return lr_scheduler.SequentialLR(
        optimizer,
        [
            lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup),
            lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup),
        ],
        milestones=[warmup],
    )


class TorchScheduled(TwoGroupNet):
    """Warmup + cosine as a torch ``SequentialLR`` every step, and ``ReduceLROnPlateau`` after each validation."""

    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.total_steps = total_steps

    def configure_optimizers(self) -> Any:
        optimizer = two_groups(self, self.lr, self.weight_decay)
        return [optimizer], [
            {"scheduler": torch_warmup_cosine(optimizer, self.total_steps), "interval": "step"},
            {
                "scheduler": lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", **PLATEAU),
                "interval": "epoch",
                "monitor": "val_loss",
            },
        ]


def timm_module(cosine_cls: type, total_steps: int) -> MNIST1DConvNet:
    class TimmScheduled(TwoGroupNet):
        """The demo CNN with timm's ``CosineLRScheduler`` (warmup) updated every optimizer step."""

        def configure_optimizers(self) -> Any:
            optimizer = two_groups(self, self.lr, self.weight_decay)
            schedule = cosine_cls(
                optimizer,
                t_initial=total_steps,
                warmup_t=warmup_steps(total_steps),
                warmup_lr_init=0.0,
                t_in_epochs=False,
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

        def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
            scheduler.step_update(num_updates=self.global_step)

    return TimmScheduled()


def pack_callbacks() -> list[Callback]:
    return [
        Warmup(f"{round(WARMUP_FRACTION * 100)}%"),
        CosineAnnealing(start="after_warmup"),
        PlateauDecay(monitor="val_loss", **PLATEAU),  # type: ignore[arg-type]
    ]


def build(variant: str, steps: int, timm_cls: type | None) -> tuple[Any, list[Callback]]:
    """The module and the extra callbacks of one variant."""
    if variant == "bare":
        return TwoGroupNet(), []
    if variant == "pack":
        return TwoGroupNet(), [*pack_callbacks(), TuningDashboard()]
    if variant == "pack_no_dashboard":
        return TwoGroupNet(), pack_callbacks()
    if variant == "torch":
        return TorchScheduled(steps), [LearningRateMonitor(logging_interval="step")]
    if variant == "timm":
        assert timm_cls is not None
        return timm_module(timm_cls, steps), [LearningRateMonitor(logging_interval="step")]
    raise ValueError(variant)


# ---- attribution ------------------------------------------------------------------------------------------------


class Attribution:
    """Wall time spent inside one tool's own code during a real fit, split into per-step and one-time work.

    :meth:`instrument` patches methods on classes for the duration of a ``with`` block; nested calls (a hook that
    calls ``write``, a ``write`` from the pre-step hook) are counted once, by the outermost timed call. ``calls``
    counts the outermost (timed) calls, so the timer's own cost can be taken out (:func:`timer_bias`).
    """

    def __init__(self) -> None:
        self.per_step = 0.0  # wall seconds (perf_counter)
        self.per_step_cpu = 0.0  # CPU seconds of this thread (thread_time): not inflated while others hold the CPU
        self.one_time = 0.0
        self.calls = 0
        self._depth = 0
        # per timed function: [CPU seconds, calls], per-step work only
        self.by_name: dict[str, list[float]] = {}
        self.marked: tuple[float, float, int, dict[str, tuple[float, float]]] = (0.0, 0.0, 0, {})

    def mark(self) -> None:
        """Remember the totals so far: what comes after is the steady state (first-call costs left out)."""
        by_name = {name: (cpu, calls) for name, (cpu, calls) in self.by_name.items()}
        self.marked = (self.per_step, self.per_step_cpu, self.calls, by_name)

    def wrap(self, function: Callable[..., Any], one_time: bool = False, label: str = "") -> Callable[..., Any]:
        entry = self.by_name.setdefault(label or function.__qualname__, [0.0, 0])

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return function(*args, **kwargs)
            self._depth = 1
            start = time.perf_counter()
            cpu_start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                cpu = time.thread_time() - cpu_start
                elapsed = time.perf_counter() - start
                self._depth = 0
                if one_time:
                    self.one_time += elapsed
                else:
                    self.per_step += elapsed
                    self.per_step_cpu += cpu
                    self.calls += 1
                    entry[0] += cpu
                    entry[1] += 1

        timed.__wrapped__ = function  # type: ignore[attr-defined]
        return timed

    def wrap_factory(self, factory: Callable[..., Callable[..., Any]]) -> Callable[..., Any]:
        """Wrap a method that RETURNS a hook (``_after_step_hook``): the hook it returns is timed."""

        def make(*args: Any, **kwargs: Any) -> Callable[..., Any]:
            return self.wrap(factory(*args, **kwargs), label=f"{factory.__qualname__} closure")

        return make

    @contextmanager
    def instrument(self, variant: str, callbacks: list[Callback]) -> Iterator[None]:
        with ExitStack() as stack:

            def patch(owner: type, name: str, value: Any) -> None:
                had = name in vars(owner)
                old = vars(owner).get(name)
                setattr(owner, name, value)
                stack.callback(lambda: setattr(owner, name, old) if had else delattr(owner, name))

            classes: set[type] = set()
            for callback in callbacks:
                classes.add(type(callback))
            for cls in sorted(classes, key=lambda c: c.__qualname__):
                # every hook the class (or a base below Lightning's Callback) defines, resolved as the class sees it
                names = {
                    name
                    for base in cls.__mro__
                    if base not in (Callback, object) and issubclass(base, Callback)
                    for name in vars(base)
                    if name.startswith("on_") or name in ("setup", "teardown")
                }
                for name in sorted(names):
                    hook = self.wrap(
                        getattr(cls, name), one_time=name in ONE_TIME_HOOKS, label=f"{cls.__name__}.{name}"
                    )
                    patch(cls, name, hook)
                key = inspect.getattr_static(cls, "state_key")  # Lightning reads it on every hook call
                if isinstance(key, property):
                    patch(cls, "state_key", property(self.wrap(key.fget, label=f"{cls.__name__}.state_key")))
                # a cached_property (the schedule callbacks) is an instance-dict lookup after the first read: wrapping
                # it in a timed property would recompute it on every read and time that instead
            if variant.startswith("pack"):
                for name in ("write", "on_train_batch_end", "on_train_epoch_start", "on_train_epoch_end", "log"):
                    patch(LRCoordinator, name, self.wrap(getattr(LRCoordinator, name)))
                patch(LRCoordinator, "begin", self.wrap(LRCoordinator.begin, one_time=True))
                for name in ("_after_step_hook", "_before_step_hook"):
                    patch(LRCoordinator, name, self.wrap_factory(getattr(LRCoordinator, name)))
            elif variant != "bare":
                patch(
                    _TrainingEpochLoop, "_update_learning_rates", self.wrap(_TrainingEpochLoop._update_learning_rates)
                )
            yield


def timer_bias(samples: int = 20000) -> tuple[float, float]:
    """Seconds (wall, CPU) one timed call of a no-op adds to the attributed totals (the timers' own cost)."""
    attribution = Attribution()
    noop = attribution.wrap(lambda: None)
    wall, cpu = [], []
    for _ in range(5):
        attribution.per_step = attribution.per_step_cpu = 0.0
        for _ in range(samples):
            noop()
        wall.append(attribution.per_step / samples)
        cpu.append(attribution.per_step_cpu / samples)
    return statistics.median(wall), statistics.median(cpu)


def run_once(variant: str, steps: int, skip: int, data: MNIST1DDataModule, root: str, timm_cls: type | None) -> dict:
    torch.manual_seed(0)
    model, callbacks = build(variant, steps, timm_cls)
    timer = make_step_timer(skip)
    attribution = Attribution()

    class Mark(Callback):
        """At the start of batch ``skip``: the per-step totals from here on are the steady state."""

        def __init__(self) -> None:
            self.batches = 0

        def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if self.batches == skip:
                attribution.mark()
            self.batches += 1

    trainer = quiet_trainer(
        max_steps=steps,
        max_epochs=-1,
        logger=TensorBoardLogger(root, name=variant),
        log_every_n_steps=10,
        # the timer and the mark first: their batch start is the start of the iteration
        callbacks=[timer, Mark(), *callbacks],
    )
    start = time.perf_counter()
    with attribution.instrument(variant, callbacks):
        trainer.fit(model, datamodule=data)
    total = time.perf_counter() - start
    assert trainer.global_step == steps, (variant, trainer.global_step)
    wall0, cpu0, calls0, by_name0 = attribution.marked
    counted = steps - skip
    by_name = {}
    for name, (cpu, calls) in attribution.by_name.items():
        cpu_before, calls_before = by_name0.get(name, (0.0, 0))
        if calls - calls_before:
            by_name[name] = ((cpu - cpu_before) / counted, (calls - calls_before) / counted)
    return {
        "per_step": timer.per_step(),
        "intra": timer.intra_epoch_median(),
        "fit": total,
        "own": (attribution.per_step - wall0) / counted,
        "own_cpu": (attribution.per_step_cpu - cpu0) / counted,
        "calls": (attribution.calls - calls0) / counted,
        "first_steps_cpu": cpu0,
        "one_time": attribution.one_time,
        "by_name": by_name,
    }


# ---- micro-benchmark --------------------------------------------------------------------------------------------


def micro(data: MNIST1DDataModule, root: str, timm_cls: type | None, calls: int, rounds: int) -> list[list[str]]:
    """Microseconds per call of the coordinator's per-step work vs. one scheduler step, interleaved rounds."""
    found: dict[str, Any] = {}

    class Grab(Callback):
        def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:  # still attached: teardown comes later
            coordinator = coordinator_for(trainer)
            assert coordinator is not None
            plan = coordinator.plans[0]
            assert plan is not None
            assert len(plan.optimizer.param_groups) == 2
            found.update(coordinator=coordinator, plan=plan, trainer=trainer)

    callbacks = [*pack_callbacks(), Grab()]
    trainer = quiet_trainer(
        max_steps=108, logger=TensorBoardLogger(root, name="micro"), log_every_n_steps=10, callbacks=callbacks
    )
    trainer.fit(TwoGroupNet(), datamodule=data)
    coordinator, plan = found["coordinator"], found["plan"]
    optimizer = plan.optimizer
    # Both sides past their warmup and in the middle of a long cosine, for every call of the loop: the pack's cosine
    # is stretched to 10**9 steps (a benchmark-only write of its resolved length), torch's T_max is 10**9 as well.
    cosine = next(cb for cb in plan.callbacks if isinstance(cb, CosineAnnealing))
    cosine._lengths[0] = 10**9
    after_step = LRCoordinator._after_step_hook(coordinator, plan)

    def pack_step() -> None:
        after_step(optimizer, (), {})
        coordinator.on_train_batch_end()

    def pack_write() -> None:
        coordinator.write(plan)

    def pack_log() -> None:
        coordinator.log(trainer)

    params = [torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))]
    torch_opt = torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}], lr=3e-3)
    sequential = lr_scheduler.SequentialLR(
        torch_opt,
        [
            lr_scheduler.LinearLR(torch_opt, start_factor=0.2, total_iters=5),
            lr_scheduler.CosineAnnealingLR(torch_opt, T_max=10**9),
        ],
        milestones=[5],
    )
    for _ in range(100):  # past the warmup, as the pack's plan is
        sequential.step()
    benches: dict[str, Callable[[], None]] = {
        "pack_step": pack_step,
        "pack_write": pack_write,
        "torch_step": sequential.step,
    }
    if timm_cls is not None:
        timm_opt = torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:]}], lr=3e-3)
        timm_sched = timm_cls(timm_opt, t_initial=10**9, warmup_t=10**9 // 20, t_in_epochs=False)
        counter = iter(range(10**12))
        benches["timm_step"] = lambda: timm_sched.step_update(num_updates=next(counter))
    # the log runs every 10th step only, and writes to TensorBoard: fewer calls
    benches["pack_log"] = pack_log
    times: dict[str, list[float]] = {name: [] for name in benches}
    cpu_times: dict[str, list[float]] = {name: [] for name in benches}
    for round_index in range(rounds):
        order = list(benches) if round_index % 2 == 0 else list(benches)[::-1]
        for name in order:
            n = calls // 10 if name == "pack_log" else calls
            fn = benches[name]
            start, cpu_start = time.perf_counter(), time.thread_time()
            for _ in range(n):
                fn()
            cpu_times[name].append((time.thread_time() - cpu_start) / n)
            times[name].append((time.perf_counter() - start) / n)

    def cell(name: str) -> tuple[str, str, str]:
        values, cpu = times[name], cpu_times[name]
        return (
            f"**{statistics.median(cpu) * 1e6:.1f}**",
            f"{min(cpu) * 1e6:.1f}-{max(cpu) * 1e6:.1f}",
            f"{statistics.median(values) * 1e6:.1f}",
        )

    rows = [
        ["pack: step post-hook + `LRCoordinator.on_train_batch_end()` (= `write(plan)`), per step", *cell("pack_step")],
        ["pack: `LRCoordinator.write(plan)` alone", *cell("pack_write")],
        ["torch: `SequentialLR(LinearLR, CosineAnnealingLR).step()`", *cell("torch_step")],
    ]
    if "timm_step" in times:
        rows.append(["timm: `CosineLRScheduler.step_update(i)`", *cell("timm_step")])
    rows.append(["pack: `LRCoordinator.log(trainer)` (every 10th step, to TensorBoard)", *cell("pack_log")])
    ratio = statistics.median(cpu_times["pack_step"]) / statistics.median(cpu_times["torch_step"])
    wall_ratio = statistics.median(times["pack_step"]) / statistics.median(times["torch_step"])
    rows.append(["ratio: pack per-step work / torch `step()`", f"**{ratio:.2f}**", "", f"{wall_ratio:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=720, help="optimizer steps per run (36 per epoch)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds of all variants")
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of the end-to-end timing")
    parser.add_argument("--timm", default=os.environ.get("TIMM_WHEEL"), help="path of a timm wheel")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 108 steps, 2 repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared)")
    parser.add_argument("--out", default="overhead.md", help="file name under benchmarks/results/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, repeats = (108, 2) if args.quick else (args.steps, args.repeats)
    skip = args.skip
    timm_cls, timm_note = load_timm_cosine(args.timm)
    variants = ["bare", "pack", "pack_no_dashboard", "torch"] + (["timm"] if timm_cls is not None else [])
    results: dict[str, list[dict]] = {v: [] for v in variants}
    bias = timer_bias()
    with tempfile.TemporaryDirectory() as root:
        data = MNIST1DDataModule(num_samples=5000, batch_size=100)
        data.prepare_data()
        run_once("bare", 40, 5, data, root, timm_cls)  # warm-up: caches, first-call costs
        for round_index in range(repeats):
            order = variants if round_index % 2 == 0 else variants[::-1]  # alternate order: no fixed position bias
            for variant in order:
                results[variant].append(run_once(variant, steps, args.skip, data, root, timm_cls))
            print(
                f"round {round_index + 1}/{repeats}: "
                + ", ".join(
                    f"{v} {results[v][-1]['per_step'] * 1e3:.2f} ms ({results[v][-1]['own_cpu'] * 1e6:.0f} us CPU own)"
                    for v in variants
                ),
                file=sys.stderr,
            )
        micro_rows = micro(data, root, timm_cls, calls=2000 if args.quick else 20000, rounds=3 if args.quick else 7)
    second = timer_bias()
    bias, bias_cpu = statistics.median([bias[0], second[0]]), statistics.median([bias[1], second[1]])

    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    def net(run: dict) -> float:
        return run["own_cpu"] - run["calls"] * bias_cpu

    def net_wall(run: dict) -> float:
        return run["own"] - run["calls"] * bias

    def spread(values: list[float], scale: float, fmt: str) -> str:
        return f"{min(values) * scale:{fmt}}-{max(values) * scale:{fmt}}"

    own_rows = []
    for variant in variants[1:]:
        runs = results[variant]
        nets = [net(r) for r in runs]
        walls = [net_wall(r) for r in runs]
        own_rows.append(
            [
                f"`{variant}`",
                f"**{statistics.median(nets) * 1e6:.1f}**",
                spread(nets, 1e6, ".1f"),
                f"{statistics.median(walls) * 1e6:.1f} ({spread(walls, 1e6, '.0f')})",
                f"{med(variant, 'calls'):.1f}",
                f"{statistics.median(r['own'] / r['per_step'] for r in runs) * 100:.2f}%",
                f"{med(variant, 'first_steps_cpu') * 1e3:.1f}",
                f"{med(variant, 'one_time') * 1e3:.0f}",
            ]
        )
    pack_net = statistics.median(net(r) for r in results["pack_no_dashboard"])
    pack_dash_net = statistics.median(net(r) for r in results["pack"])
    torch_net = statistics.median(net(r) for r in results["torch"])
    paired = [net(p) / net(t) for p, t in zip(results["pack_no_dashboard"], results["torch"], strict=True)]
    pack_wall = statistics.median(net_wall(r) for r in results["pack_no_dashboard"])
    torch_wall = statistics.median(net_wall(r) for r in results["torch"])

    breakdown_rows = []
    for variant in ("pack_no_dashboard", "torch"):
        names = sorted({name for r in results[variant] for name in r["by_name"]})
        entries = []
        for name in names:
            cpu = statistics.median(r["by_name"].get(name, (0.0, 0.0))[0] for r in results[variant])
            calls = statistics.median(r["by_name"].get(name, (0.0, 0.0))[1] for r in results[variant])
            entries.append((cpu - calls * bias_cpu, calls, name))
        for cpu, calls, name in sorted(entries, reverse=True)[:8]:
            breakdown_rows.append([f"`{variant}`", f"`{name}`", f"{cpu * 1e6:.1f}", f"{calls:.2f}"])

    bare, bare_intra = med("bare", "per_step"), med("bare", "intra")
    e2e_rows = []
    for variant in variants:
        per_step = [r["per_step"] for r in results[variant]]
        ratios = [r["per_step"] / b["per_step"] for r, b in zip(results[variant], results["bare"], strict=True)]
        e2e_rows.append(
            [
                f"`{variant}`",
                f"{med(variant, 'per_step') * 1e3:.3f}",
                spread(per_step, 1e3, ".3f"),
                f"{med(variant, 'per_step') / bare:.3f}",
                f"{statistics.median(ratios):.3f}",
                f"{med(variant, 'intra') * 1e3:.3f} ({med(variant, 'intra') / bare_intra:.3f})",
                f"{med(variant, 'fit'):.2f}",
            ]
        )

    def verdict(value: float) -> str:
        return "met" if value else "NOT met"

    goals = (
        f"Goals (issue 11): the pack's own code per step at most the torch way's, and at most 30 µs. Pack "
        f"(Warmup + CosineAnnealing + PlateauDecay) {pack_net * 1e6:.1f} µs vs torch {torch_net * 1e6:.1f} µs: "
        f"ratio {pack_net / torch_net:.2f} (median of paired per-round ratios {statistics.median(paired):.2f}; "
        f"<= torch: **{verdict(pack_net <= torch_net)}**); <= 30 µs: **{verdict(pack_net <= 30e-6)}**. With "
        f"TuningDashboard: {pack_dash_net * 1e6:.1f} µs. In wall time: pack {pack_wall * 1e6:.1f} µs vs torch "
        f"{torch_wall * 1e6:.1f} µs (ratio {pack_wall / torch_wall:.2f})."
    )
    text = "\n".join(
        [
            "# Per-step cost of the LR coordinator (MNIST-1D CNN, one optimizer, two param groups)",
            "",
            machine_header(),
            "",
            "MNIST1DConvNet (channels 32), one AdamW lr 3e-3 with two param groups (weights with weight decay 1e-2, "
            "biases without), batch 100 (36 steps/epoch, validation every epoch), TensorBoardLogger with "
            f"log_every_n_steps=10 in every variant. {steps} optimizer steps per run; {repeats} interleaved rounds "
            f"(order alternating), medians and min-max over the rounds. timm: {timm_note}.",
            "",
            "Variants: `pack` = Warmup('5%') + CosineAnnealing(start='after_warmup') + PlateauDecay(val_loss, "
            "factor 0.5, patience 2) + TuningDashboard, the pack logging the LR itself; `pack_no_dashboard` the same "
            "without TuningDashboard; `torch` = `SequentialLR(LinearLR, CosineAnnealingLR)` stepped every optimizer "
            "step + `ReduceLROnPlateau(val_loss)` as a second scheduler config stepped after each validation epoch "
            "(`SequentialLR` cannot hold it) + Lightning's `LearningRateMonitor(logging_interval='step')`.",
            "",
            "## Time inside each tool's own code per optimizer step",
            "",
            "CPU time of the training thread (`time.thread_time`: not inflated while other processes hold the "
            "CPU, which on this shared machine they mostly do) inside the variant's own code during the fit, nested "
            "calls counted once, per optimizer step in the steady state: from the start of batch `skip` "
            f"({skip}) to the end of the fit, validation epochs included; the first {skip} steps (the first LR "
            "write and log, where the TensorBoard writer is created) are shown apart, in ms of CPU. The wall time "
            "(`perf_counter`) of the same calls is next to it. Pack: the hooks its callbacks define and their "
            "`state_key`, `LRCoordinator.write`/"
            "`on_train_batch_end`/`on_train_epoch_start`/`on_train_epoch_end`/`log`, and the step post-hook closure "
            "(patched on the classes for the run). Torch: `LearningRateMonitor`'s hooks and `state_key`, and "
            "Lightning's `_update_learning_rates` (which calls both schedulers' `step`). One-time work (`setup`, "
            "`on_fit_start`, `on_train_start`, `begin`, `on_fit_end`, ...) is kept apart. 'net' takes out the "
            f"timers' own cost, {bias_cpu * 1e9:.0f} ns CPU / {bias * 1e9:.0f} ns wall per timed call, measured in "
            "this process.",
            "",
            md_table(
                [
                    "variant",
                    "net CPU µs/step (median)",
                    "min-max",
                    "net wall µs/step (min-max)",
                    "timed calls/step",
                    "share of the step",
                    "first steps, CPU ms",
                    "one-time wall ms",
                ],
                own_rows,
            ),
            "",
            goals,
            "",
            "Where it goes (the largest items; net CPU µs per optimizer step, medians over the rounds; calls per "
            "step; nested calls are inside their caller's line):",
            "",
            md_table(["variant", "function", "net CPU µs/step", "calls/step"], breakdown_rows),
            "",
            "## Per-step Python cost alone (micro-benchmark, interleaved)",
            "",
            "In a tight loop on the two-group optimizer of a finished pack fit (Warmup + Cosine + Plateau), against "
            "torch's `SequentialLR` on an AdamW of two groups, both in the middle of a long cosine after the warmup. "
            "CPU µs per call (thread time), median and min-max of the interleaved rounds; wall µs next to it.",
            "",
            md_table(["what", "CPU µs per call", "min-max", "wall µs per call"], micro_rows),
            "",
            "## End to end (whole training loop per step)",
            "",
            md_table(
                [
                    "variant",
                    "ms/step (median)",
                    "min-max",
                    "ratio to bare",
                    "median of paired ratios",
                    "ms/step within an epoch (ratio)",
                    "whole fit() s",
                ],
                e2e_rows,
            ),
            "",
            "`ms/step` covers the whole loop per optimizer step (validation amortised; instrumented runs, the timers "
            "add well under 0.1% of a step); the 'within an epoch' column is the median gap between consecutive "
            "batch starts of one epoch. On this shared machine these differ by more between rounds than the tools "
            "cost: the attributed time above is the measure of what a tool adds.",
            "",
        ]
    )
    write_results(args.out, text)


if __name__ == "__main__":
    main()
