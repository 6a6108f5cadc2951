"""Overhead per optimizer step of the schedule stack, against bare Lightning and a torch scheduler.

Trains the MNIST-1D CNN demo for ``--steps`` optimizer steps in each variant, interleaving the variants over
``--repeats`` rounds, and reports the median time per step and its ratio to bare Lightning:

* ``bare``: constant LR, no callbacks;
* ``torch_scheduler``: warmup + cosine as ``SequentialLR(LinearLR, CosineAnnealingLR)`` in ``configure_optimizers``
  with ``interval: "step"``;
* ``lightning_tuning``: ``Warmup`` + ``CosineAnnealing`` + ``PlateauDecay`` (+ LR logging);
* ``lightning_tuning+dashboard``: the same plus ``TuningDashboard`` and a TensorBoardLogger.

It also times ``apply_schedules`` alone (the Python cost the pack adds per step). Run:
``python benchmarks/step_overhead.py [--steps 300 --repeats 5]``; results go to ``benchmarks/results/step_overhead.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.optim import lr_scheduler

from lightning_tuning import CosineAnnealing, PlateauDecay, TuningDashboard, Warmup
from lightning_tuning.callbacks._schedule import apply_schedules
from lightning_tuning.demos import MNIST1DConvNet, MNIST1DDataModule

RESULTS = Path(__file__).parent / "results" / "step_overhead.md"


class TorchScheduled(MNIST1DConvNet):
    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.total_steps = total_steps

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-2)
        warmup = max(1, self.total_steps // 20)
        schedule = lr_scheduler.SequentialLR(
            optimizer,
            [lr_scheduler.LinearLR(optimizer, 1 / warmup, total_iters=warmup),
             lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.total_steps - warmup)],
            milestones=[warmup],
        )  # fmt: skip
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class StepTimer(Callback):
    """Wall time from the first to the last optimizer step (setup and teardown excluded)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.end = 0.0
        self.steps = 0

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        if self.steps == 0 and self.start == 0.0:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        self.end = time.perf_counter()
        self.steps = trainer.global_step


def run(variant: str, steps: int, data: MNIST1DDataModule, root: str) -> float:
    torch.manual_seed(0)
    timer = StepTimer()
    callbacks: list[Callback] = [timer]
    logger: Any = False
    model: Any = MNIST1DConvNet()
    if variant == "torch_scheduler":
        model = TorchScheduled(steps)
    if variant.startswith("lightning_tuning"):
        callbacks += [Warmup("5%"), CosineAnnealing(start="after_warmup"), PlateauDecay(patience=2)]
    if variant.endswith("dashboard"):
        callbacks.append(TuningDashboard(preview=False))
        logger = TensorBoardLogger(root)
    trainer = Trainer(max_steps=steps, max_epochs=-1, limit_val_batches=0, num_sanity_val_steps=0, logger=logger,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      callbacks=callbacks, default_root_dir=root, log_every_n_steps=50)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return (timer.end - timer.start) / (timer.steps - 1)


def time_apply(steps: int, data: MNIST1DDataModule, root: str) -> float:
    """Microseconds per call of ``apply_schedules`` with three schedule callbacks on one optimizer."""
    samples: list[float] = []

    class Probe(Callback):
        def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
            start = time.perf_counter()
            for _ in range(2000):
                apply_schedules(trainer)
            samples.append((time.perf_counter() - start) / 2000 * 1e6)

    callbacks = [Warmup("5%"), CosineAnnealing(start="after_warmup"), PlateauDecay(patience=2), Probe()]
    trainer = Trainer(max_steps=steps, max_epochs=-1, limit_val_batches=0, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, callbacks=callbacks,
                      default_root_dir=root)  # fmt: skip
    trainer.fit(MNIST1DConvNet(), datamodule=data)
    return samples[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="60 steps, 2 repeats")
    args = parser.parse_args()
    steps, repeats = (60, 2) if args.quick else (args.steps, args.repeats)
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    variants = ["bare", "torch_scheduler", "lightning_tuning", "lightning_tuning+dashboard"]
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as root:
        data = MNIST1DDataModule(num_samples=5000, batch_size=100)
        run("bare", 20, data, root)  # warm-up: data generation, first-call costs
        for _ in range(repeats):
            for variant in variants:  # interleaved, so drifts in machine load hit every variant alike
                times[variant].append(run(variant, steps, data, root))
        apply_us = time_apply(20, data, root)
    bare = statistics.median(times["bare"])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    lines = [
        "# Overhead per optimizer step (MNIST-1D CNN, batch 100)",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"lightning {lightning.__version__}. {steps} steps per run, {repeats} interleaved repeats, medians.",
        "",
        "| variant | median ms/step | min | max | ratio to bare |",
        "|---|---|---|---|---|",
    ]
    for variant in variants:
        median = statistics.median(times[variant])
        lines.append(
            f"| {variant} | {median * 1e3:.3f} | {min(times[variant]) * 1e3:.3f} | {max(times[variant]) * 1e3:.3f} "
            f"| {median / bare:.3f} |"
        )
    lines += ["", f"`apply_schedules` with three schedule callbacks: {apply_us:.1f} µs per call."]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
