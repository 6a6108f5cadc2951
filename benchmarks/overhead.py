"""Overhead per optimizer step of this pack on the MNIST-1D CNN, against bare Lightning, torch and timm schedulers.

Variants (all: ``MNIST1DConvNet`` with its default AdamW(lr=3e-3), batch 100, a ``TensorBoardLogger`` with
``log_every_n_steps=10``, validation every epoch, no checkpointing/progress bar):

* ``bare``: constant LR, no schedule, no LR logging;
* ``pack``: ``Warmup("5%")`` + ``CosineAnnealing(start="after_warmup")`` + ``PlateauDecay(monitor="val_loss")``
  + ``TuningDashboard()`` (the pack logs the LR itself);
* ``pack_no_dashboard``: the same without ``TuningDashboard`` (to attribute the cost);
* ``torch``: the same warmup + cosine as ``SequentialLR(LinearLR, CosineAnnealingLR)`` in ``configure_optimizers``
  with ``interval: "step"``, plus Lightning's ``LearningRateMonitor(logging_interval="step")``;
* ``timm``: timm's ``CosineLRScheduler(warmup_t=..., t_in_epochs=False)`` stepped per optimizer step with
  ``step_update`` from ``lr_scheduler_step``, plus ``LearningRateMonitor``. timm's top-level package imports
  torchvision (not installable next to this torch), so only ``timm/scheduler`` is loaded, unmodified, from the
  wheel given by ``--timm`` (or ``$TIMM_WHEEL``): ``pip download --no-deps timm -d /tmp/timm_dl``.

Time per step = wall time between the ``on_train_batch_start`` of batch ``skip`` and of the last batch, divided by
the steps in between (the whole loop: data, forward/backward, optimizer step and its hooks, callbacks, logging,
amortised validation). Variants run interleaved (A,B,C,A,B,C,...) in one process; medians and ratios to ``bare``.
A micro-benchmark times the pack's per-step Python work alone (``apply_schedules``) against ``scheduler.step()``.

Run: ``python benchmarks/overhead.py`` (about 5 min) or ``--quick`` (about 1 min);
results go to ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import machine_header, make_step_timer, md_table, quiet, quiet_trainer, write_results
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from torch.optim import lr_scheduler

from lightning_tuning import CosineAnnealing, PlateauDecay, TuningDashboard, Warmup
from lightning_tuning.callbacks import _schedule
from lightning_tuning.demos import MNIST1DConvNet, MNIST1DDataModule

quiet()

WARMUP_FRACTION = 0.05


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
        return None, f"timm not measurable here: {reason}; no timm wheel given (--timm)"
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
        return None, f"timm not measurable here: {reason}; timm.scheduler alone: {err}"


class TorchScheduled(MNIST1DConvNet):
    """The demo CNN with warmup + cosine as a torch ``SequentialLR`` stepped every optimizer step."""

    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.total_steps = total_steps

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        warmup = max(1, round(self.total_steps * WARMUP_FRACTION))
        schedule = lr_scheduler.SequentialLR(
            optimizer,
            [
                lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup),
                lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.total_steps - warmup),
            ],
            milestones=[warmup],
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def timm_module(cosine_cls: type, total_steps: int) -> MNIST1DConvNet:
    class TimmScheduled(MNIST1DConvNet):
        """The demo CNN with timm's ``CosineLRScheduler`` (warmup) updated every optimizer step."""

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            warmup = max(1, round(total_steps * WARMUP_FRACTION))
            schedule = cosine_cls(
                optimizer, t_initial=total_steps, warmup_t=warmup, warmup_lr_init=0.0, t_in_epochs=False
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

        def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
            scheduler.step_update(num_updates=self.global_step)

    return TimmScheduled()


def build(variant: str, steps: int, timm_cls: type | None) -> tuple[Any, list[Callback]]:
    """The module and the extra callbacks of one variant."""
    if variant == "bare":
        return MNIST1DConvNet(), []
    if variant.startswith("pack"):
        callbacks: list[Callback] = [
            Warmup(f"{round(WARMUP_FRACTION * 100)}%"),
            CosineAnnealing(start="after_warmup"),
            PlateauDecay(monitor="val_loss", factor=0.5, patience=2),
        ]
        if variant == "pack":
            callbacks.append(TuningDashboard())
        return MNIST1DConvNet(), callbacks
    if variant == "torch":
        return TorchScheduled(steps), [LearningRateMonitor(logging_interval="step")]
    if variant == "timm":
        assert timm_cls is not None
        return timm_module(timm_cls, steps), [LearningRateMonitor(logging_interval="step")]
    raise ValueError(variant)


ONE_TIME_HOOKS = {"setup", "teardown", "on_fit_start", "on_fit_end", "on_train_start", "on_train_end"}


class Attribution:
    """Wall time spent inside one tool's own code during a real fit, split into per-step and one-time work.

    It wraps, on the instances of this run only: every ``on_*``/``setup``/``teardown`` hook of the variant's callbacks
    (this pack's, or Lightning's ``LearningRateMonitor``), the pack's ``apply_schedules`` (which its manual-optimization
    pre-step hook calls), and the scheduler's ``step``/``step_update`` (torch/timm). Nested calls count once.
    Unlike the end-to-end ratio, this does not drown in the machine's run-to-run noise.
    """

    def __init__(self) -> None:
        self.per_step = 0.0
        self.one_time = 0.0
        self._depth = 0

    def wrap(self, function: Callable[..., Any], one_time: bool = False) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return function(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self._depth -= 1
                if one_time:
                    self.one_time += elapsed
                else:
                    self.per_step += elapsed

        return timed

    def instrument_callback(self, callback: Callback) -> None:
        for name in dir(type(callback)):
            if (name.startswith("on_") or name in ONE_TIME_HOOKS) and callable(getattr(callback, name)):
                setattr(callback, name, self.wrap(getattr(callback, name), one_time=name in ONE_TIME_HOOKS))

    def scheduler_probe(self) -> Callback:
        """A callback that wraps the module's LR scheduler once it exists (torch: ``step``, timm: ``step_update``)."""
        attribution = self

        class WrapScheduler(Callback):
            def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
                for config in trainer.lr_scheduler_configs:
                    for name in ("step", "step_update"):
                        if hasattr(config.scheduler, name):
                            setattr(config.scheduler, name, attribution.wrap(getattr(config.scheduler, name)))

        return WrapScheduler()


def run_once(
    variant: str,
    steps: int,
    skip: int,
    data: MNIST1DDataModule,
    root: str,
    timm_cls: type | None,
    attribution: Attribution | None = None,
) -> dict:
    torch.manual_seed(0)
    model, callbacks = build(variant, steps, timm_cls)
    timer = make_step_timer(skip)
    original_apply = _schedule.apply_schedules
    if attribution is not None:
        for callback in callbacks:
            attribution.instrument_callback(callback)
        callbacks.append(attribution.scheduler_probe())
        _schedule.apply_schedules = attribution.wrap(original_apply)  # type: ignore[assignment]
    trainer = quiet_trainer(
        max_steps=steps,
        max_epochs=-1,
        logger=TensorBoardLogger(root, name=variant),
        log_every_n_steps=10,
        callbacks=[timer, *callbacks],  # the timer first: its batch start is the start of the iteration
    )
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=data)
    finally:
        _schedule.apply_schedules = original_apply  # type: ignore[assignment]
    total = time.perf_counter() - start
    return {"per_step": timer.per_step(), "intra": timer.intra_epoch_median(), "fit": total}


def attribute(
    variants: list[str], steps: int, skip: int, data: MNIST1DDataModule, root: str, timm_cls: type | None, repeats: int
) -> list[list[str]]:
    """Per variant: µs per step inside its own code, and that as a share of the variant's own step time."""
    shares: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants if v != "bare"}
    for _ in range(repeats):
        for variant in shares:
            attribution = Attribution()
            run = run_once(variant, steps, skip, data, root, timm_cls, attribution)
            shares[variant].append((attribution.per_step / steps, attribution.one_time, run["per_step"]))
    rows = []
    for variant, values in shares.items():
        per_step = statistics.median(v[0] for v in values)
        share = statistics.median(v[0] / v[2] for v in values)
        rows.append(
            [
                f"`{variant}`",
                f"{per_step * 1e6:.1f}",
                f"**{share * 100:.2f}%**",
                f"{statistics.median(v[1] for v in values) * 1e3:.0f}",
            ]
        )
    return rows


def micro(data: MNIST1DDataModule, root: str, timm_cls: type | None, calls: int) -> list[list[str]]:
    """Microseconds per call of the pack's per-step work vs. one scheduler step of torch/timm."""
    rows: list[list[str]] = []
    found: dict[str, Any] = {}

    class Grab(Callback):
        def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:  # still attached: teardown comes later
            found["calls_in_fit"] = counter["n"]
            times = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(calls):
                    original(trainer)
                times.append((time.perf_counter() - start) / calls)
            found["apply"] = statistics.median(times)
            schedule_cbs = _schedule.schedule_callbacks(trainer)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(calls):
                    schedule_cbs[0]._log_values(trainer)
                times.append((time.perf_counter() - start) / calls)
            found["log"] = statistics.median(times)

    # count how often apply_schedules runs per optimizer step in a real fit
    counter = {"n": 0}
    original = _schedule.apply_schedules

    def counting(trainer: Any, optimizer_index: int | None = None) -> None:
        counter["n"] += 1
        original(trainer, optimizer_index)

    steps = 72
    _schedule.apply_schedules = counting  # type: ignore[assignment]
    try:
        callbacks = [Warmup("5%"), CosineAnnealing(start="after_warmup"), PlateauDecay(monitor="val_loss"), Grab()]
        trainer = quiet_trainer(
            max_steps=steps, logger=TensorBoardLogger(root, name="micro"), log_every_n_steps=10, callbacks=callbacks
        )
        trainer.fit(MNIST1DConvNet(), datamodule=data)
        calls_in_fit = found["calls_in_fit"]
    finally:
        _schedule.apply_schedules = original  # type: ignore[assignment]
    per_step_calls = calls_in_fit / steps
    rows.append(
        [
            "pack: `apply_schedules(trainer)` (Warmup+Cosine+Plateau, 1 optimizer, 1 group)",
            f"{found['apply'] * 1e6:.1f}",
            "",
        ]
    )
    rows.append(["pack: LR logging `_log_values` (every 10th step)", f"{found['log'] * 1e6:.1f}", "0.1 calls/step"])

    def time_step(make: Callable[[torch.optim.Optimizer], Any], step: Callable[[Any, int], None]) -> float:
        params = [torch.nn.Parameter(torch.zeros(1))]
        optimizer = torch.optim.AdamW(params, lr=3e-3)
        sched = make(optimizer)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for i in range(calls):
                step(sched, i)
            times.append((time.perf_counter() - start) / calls)
        return statistics.median(times)

    total = 10**9  # long enough that the schedule never ends during the loop

    def torch_sched(opt: torch.optim.Optimizer) -> Any:
        warm = lr_scheduler.LinearLR(opt, start_factor=1e-3, total_iters=total // 20)
        cos = lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[total // 20])

    us = time_step(torch_sched, lambda s, i: s.step())
    rows.append(["torch: `SequentialLR(LinearLR, CosineAnnealingLR).step()`", f"{us * 1e6:.1f}", "1 call/step"])
    if timm_cls is not None:
        us = time_step(
            lambda opt: timm_cls(opt, t_initial=total, warmup_t=total // 20, t_in_epochs=False),
            lambda s, i: s.step_update(num_updates=i),
        )
        rows.append(["timm: `CosineLRScheduler.step_update(i)`", f"{us * 1e6:.1f}", "1 call/step"])
    rows[0][2] = f"{per_step_calls:.2f} calls/step in a real fit ({calls_in_fit} calls / {steps} steps)"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=720, help="optimizer steps per run (36 per epoch)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds of all variants")
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of the timing")
    parser.add_argument("--timm", default=os.environ.get("TIMM_WHEEL"), help="path of a timm wheel")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 108 steps, 2 repeats")
    parser.add_argument("--out", default="overhead.md", help="file name under benchmarks/results/")
    args = parser.parse_args()
    steps, repeats = (108, 2) if args.quick else (args.steps, args.repeats)
    timm_cls, timm_note = load_timm_cosine(args.timm)
    variants = ["bare", "pack", "pack_no_dashboard", "torch"] + (["timm"] if timm_cls is not None else [])
    results: dict[str, list[dict]] = {v: [] for v in variants}
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
                + ", ".join(f"{v} {results[v][-1]['per_step'] * 1e3:.3f} ms" for v in variants),
                file=sys.stderr,
            )
        micro_rows = micro(data, root, timm_cls, calls=2000 if args.quick else 20000)
        attribution_rows = attribute(variants, steps, args.skip, data, root, timm_cls, 1 if args.quick else 3)

    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    bare, bare_intra = med("bare", "per_step"), med("bare", "intra")
    rows = []
    for variant in variants:
        per_step = [r["per_step"] for r in results[variant]]
        # paired ratios: each round's run against the bare run of the same round
        paired = [r["per_step"] / b["per_step"] for r, b in zip(results[variant], results["bare"], strict=True)]
        rows.append(
            [
                f"`{variant}`",
                f"{med(variant, 'per_step') * 1e3:.3f}",
                f"{min(per_step) * 1e3:.3f}-{max(per_step) * 1e3:.3f}",
                f"**{med(variant, 'per_step') / bare:.3f}**",
                f"{statistics.median(paired):.3f}",
                f"{med(variant, 'intra') * 1e3:.3f} ({med(variant, 'intra') / bare_intra:.3f})",
                f"{med(variant, 'fit'):.2f}",
            ]
        )
    pack, torch_ms = med("pack", "per_step"), med("torch", "per_step")
    verdict = (
        f"Goal (pack within 2% of bare, and no slower than the torch scheduler): pack/bare = {pack / bare:.3f} "
        f"({'met' if pack / bare <= 1.02 else 'NOT met'}), pack/torch = {pack / torch_ms:.3f} "
        f"({'met' if pack <= torch_ms * 1.0 else 'NOT met'} at face value; differences under ~1% are within the noise "
        "of this machine, see the min-max column)."
    )
    text = "\n".join(
        [
            "# Overhead per optimizer step (MNIST-1D CNN)",
            "",
            machine_header(),
            "",
            f"MNIST1DConvNet (channels 32), AdamW lr 3e-3, batch 100 (36 steps/epoch, validation every epoch), "
            f"TensorBoardLogger with log_every_n_steps=10 in every variant. {steps} optimizer steps per run, first "
            f"{args.skip} left out; {repeats} interleaved rounds (order alternating), medians. timm: {timm_note}.",
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
                rows,
            ),
            "",
            "`ms/step` covers the whole training loop per optimizer step (validation amortised); the 'within an "
            "epoch' column is the median gap between consecutive batch starts of the same epoch (no validation). "
            "`whole fit()` includes setup (the dashboard's preview figure and hparams, the first validation, etc.).",
            "",
            verdict,
            "",
            "## Time inside each tool's own code during a real fit",
            "",
            "The same runs, instrumented: wall time inside the variant's callbacks' hooks, the pack's "
            "`apply_schedules` (also where its manual-optimization pre-step hook calls it) and the scheduler's "
            "`step`/`step_update`, "
            "nested calls counted once; per optimizer step, as a share of that run's time per step, and the one-time "
            "work (`setup`, `on_fit_start`, `on_train_start`, ... : the dashboard's preview figure and hparams) "
            "separately. Median of the rounds.",
            "",
            md_table(["variant", "µs per step in its code", "share of the step", "one-time ms"], attribution_rows),
            "",
            "## Per-step Python cost alone (micro-benchmark)",
            "",
            md_table(["what", "µs per call", "calls"], micro_rows),
            "",
        ]
    )
    write_results(args.out, text)


if __name__ == "__main__":
    main()
