"""LR range test: this pack's ``LRRangeTest`` against Lightning's ``Tuner.lr_find``, speed and the LR they pick.

1. Wall time of one range test of ``--steps`` optimizer steps on the MNIST-1D CNN (same model, data, LR bounds and
   number of steps), both tools interleaved over ``--repeats`` rounds; medians and their ratio.
2. Quality: for each tool's suggestion, train the CNN with ``OneCycle(max_lr=suggestion)`` for ``--epochs`` epochs
   over ``--seeds`` seeds and report the test accuracy (mean ± std).

Run: ``python benchmarks/lr_range_test.py [--quick]``; results go to ``benchmarks/results/lr_range_test.md``.
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
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.tuner import Tuner

from lightning_tuning import LRRangeTest, OneCycle
from lightning_tuning.demos import MNIST1DConvNet, MNIST1DDataModule
from lightning_tuning.lr_find import lr_find_command

RESULTS = Path(__file__).parent / "results" / "lr_range_test.md"
MIN_LR, MAX_LR = 1e-6, 1.0


def quiet_trainer(root: str, **kwargs: Any) -> Trainer:
    settings = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                "enable_checkpointing": False, "num_sanity_val_steps": 0, **kwargs}  # fmt: skip
    return Trainer(default_root_dir=root, **settings)


def ours(steps: int, data: MNIST1DDataModule, root: str) -> tuple[float, float, int]:
    seed_everything(0)
    test = LRRangeTest(min_lr=MIN_LR, max_lr=MAX_LR, num_steps=steps, apply="none")
    trainer = quiet_trainer(root, max_epochs=1, callbacks=[test])
    start = time.perf_counter()
    results = lr_find_command(trainer, MNIST1DConvNet(), data)
    return time.perf_counter() - start, float(results["chosen"]), len(results["lrs"])


def lightnings(steps: int, data: MNIST1DDataModule, root: str) -> tuple[float, float, int]:
    seed_everything(0)
    trainer = quiet_trainer(root, max_epochs=1)
    start = time.perf_counter()
    finder = Tuner(trainer).lr_find(MNIST1DConvNet(), datamodule=data, min_lr=MIN_LR, max_lr=MAX_LR,
                                    num_training=steps, update_attr=False)  # fmt: skip
    elapsed = time.perf_counter() - start
    return elapsed, float(finder.suggestion() or float("nan")), len(finder.results["lr"])


def one_cycle_accuracy(max_lr: float, seed: int, epochs: int, data: MNIST1DDataModule, root: str) -> float:
    seed_everything(seed)
    trainer = quiet_trainer(root, max_epochs=epochs, callbacks=[OneCycle(max_lr=max_lr)])
    model = MNIST1DConvNet()
    trainer.fit(model, datamodule=data)
    return float(trainer.test(model, datamodule=data, verbose=False)[0]["test_acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 repeats, 1 seed, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seeds, args.epochs = 2, 1, 2
    timings: dict[str, list[float]] = {"lightning_tuning.LRRangeTest": [], "lightning Tuner.lr_find": []}
    suggestions: dict[str, float] = {}
    steps_run: dict[str, list[int]] = {name: [] for name in timings}
    with tempfile.TemporaryDirectory() as root:
        data = MNIST1DDataModule(num_samples=5000, batch_size=100)
        ours(args.steps, data, root)  # warm-up: data generation and first-call costs
        for _ in range(args.repeats):
            for name, tool in (("lightning_tuning.LRRangeTest", ours), ("lightning Tuner.lr_find", lightnings)):
                elapsed, suggestion, ran = tool(args.steps, data, root)
                timings[name].append(elapsed)
                steps_run[name].append(ran)
                suggestions[name] = suggestion
        accuracy = {
            name: [one_cycle_accuracy(lr, seed, args.epochs, data, root) for seed in range(args.seeds)]
            for name, lr in suggestions.items()
        }
    ours_median = statistics.median(timings["lightning_tuning.LRRangeTest"])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    lines = [
        "# LR range test: lightning_tuning vs Lightning's Tuner.lr_find (MNIST-1D CNN, batch 100)",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"lightning {lightning.__version__}. {args.steps} sweep steps from {MIN_LR:g} to {MAX_LR:g} "
        "(our default suggestion: valley; Lightning's: steepest gradient), "
        f"{args.repeats} interleaved repeats, medians; quality: OneCycle(max_lr=suggestion), {args.epochs} epochs, "
        f"{args.seeds} seeds.",
        "",
        "| tool | median s per range test (incl. fit setup) | ratio to lightning_tuning | steps run (early stop) "
        "| median ms per step run | suggested LR | OneCycle test acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values in timings.items():
        median = statistics.median(values)
        accs = accuracy[name]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(
            f"| {name} | {median:.2f} | {median / ours_median:.2f} | {statistics.median(steps_run[name]):.0f} | "
            f"{statistics.median(t / n for t, n in zip(values, steps_run[name], strict=True)) * 1e3:.1f} | "
            f"{suggestions[name]:.3g} | "
            f"{statistics.mean(accs):.4f} ± {spread:.4f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
