"""LR range test: this pack's ``LRRangeTest`` against Lightning's ``Tuner.lr_find``, speed and the LR they pick.

1. Wall time of one range test of ``--steps`` optimizer steps (same model, data, LR bounds and number of steps,
   divergence stopping off in both), both tools interleaved over ``--repeats`` rounds; medians and their ratio. Two
   models: the MNIST-1D CNN (compute-bound, 0.1M parameters) and a wide MLP (12.7M parameters), where Lightning's
   checkpoint-file round trip weighs more.
2. Quality: each tool with its defaults picks an LR on the CNN; the CNN trains for ``--epochs`` epochs with that LR
   as a constant AdamW LR and as ``OneCycle``'s peak, over ``--seeds`` seeds; test accuracy, mean ± std.
3. Safety: least squares with full-batch SGD, where a step diverges above 2/h (h: the top Hessian eigenvalue, from
   ``eigvalsh``); each suggestion of the same sweep as a multiple of 2/h, over seeds, scales and conditionings.

Run: ``python benchmarks/lr_range_test.py [--quick]``; results go to ``benchmarks/results/lr_range_test.md``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, seed_everything
from lightning.pytorch.tuner import Tuner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header, quiet_trainer, write_results

from lightning_tuning import LRRangeTest, OneCycle
from lightning_tuning.demos import MNIST1DMLP, MNIST1DConvNet, MNIST1DDataModule
from lightning_tuning.lr_find import lr_find_command
from lightning_tuning.range_test import smooth, suggest, sweep_lrs

MIN_LR, MAX_LR = 1e-6, 1.0
MODELS: dict[str, Callable[[], LightningModule]] = {
    "MNIST-1D CNN (0.1M params)": MNIST1DConvNet,
    "wide MLP 3x2048 (12.7M params)": lambda: MNIST1DMLP(depth=3, width=2048),
}


def ours(
    steps: int, data: MNIST1DDataModule, root: str, early_stop: bool, model: Callable[[], LightningModule]
) -> tuple[float, dict[str, float], int]:
    seed_everything(0)
    threshold = 4.0 if early_stop else 1e30
    test = LRRangeTest(min_lr=MIN_LR, max_lr=MAX_LR, num_steps=steps, apply="none", divergence_threshold=threshold)
    trainer = quiet_trainer(default_root_dir=root, logger=False, max_epochs=100, callbacks=[test])
    start = time.perf_counter()
    results = lr_find_command(trainer, model(), data)
    return time.perf_counter() - start, dict(results["suggestions"]), len(results["lrs"])


def lightnings(
    steps: int, data: MNIST1DDataModule, root: str, early_stop: bool, model: Callable[[], LightningModule]
) -> tuple[float, dict[str, float], int]:
    seed_everything(0)
    # max_epochs must not end the sweep: with max_epochs=1 Lightning stops at the epoch's end (36 batches here) and
    # reports it as "stopped early due to diverging loss"
    trainer = quiet_trainer(default_root_dir=root, logger=False, max_epochs=100)
    start = time.perf_counter()
    finder = Tuner(trainer).lr_find(model(), datamodule=data, min_lr=MIN_LR, max_lr=MAX_LR,
                                    num_training=steps, update_attr=False,
                                    early_stop_threshold=4.0 if early_stop else None)  # fmt: skip
    elapsed = time.perf_counter() - start
    return elapsed, {"steepest": float(finder.suggestion() or float("nan"))}, len(finder.results["lr"])


def accuracy_with(lr: float, schedule: str, seed: int, epochs: int, data: MNIST1DDataModule, root: str) -> float:
    """Test accuracy after ``epochs`` of the CNN with ``lr`` as a constant AdamW LR or as OneCycle's peak."""
    seed_everything(seed)
    callbacks = [OneCycle(max_lr=lr)] if schedule == "one_cycle" else []
    trainer = quiet_trainer(default_root_dir=root, logger=False, max_epochs=epochs, callbacks=callbacks)
    model = MNIST1DConvNet(lr=lr)
    trainer.fit(model, datamodule=data)
    return float(trainer.test(model, datamodule=data, verbose=False)[0]["test_acc"])


def least_squares_ratios(seed: int, scale: float, condition: float, steps: int = 100) -> dict[str, float]:
    """The range test's sweep (1e-7 to 10, divergence stop at 4x) on ``mean((X w - y)^2)`` with full-batch SGD from
    ``w = 0``; each suggestion divided by 2/h."""
    generator = torch.Generator().manual_seed(seed)
    rows, dims = 200, 20
    x = scale * torch.randn(rows, dims, generator=generator, dtype=torch.float64)
    x = x * torch.logspace(0, -condition, dims, dtype=torch.float64)
    y = x @ torch.randn(dims, generator=generator, dtype=torch.float64)
    y = y + 0.1 * torch.randn(rows, generator=generator, dtype=torch.float64)
    edge = 2 / torch.linalg.eigvalsh(2 * x.T @ x / rows).max().item()
    w = torch.zeros(dims, dtype=torch.float64)
    lrs, losses, average, best = [], [], 0.0, math.inf
    for step, lr in enumerate(sweep_lrs(1e-7, 10.0, steps, "exponential")):
        residual = x @ w - y
        loss = residual.pow(2).mean().item()
        if not math.isfinite(loss):
            break
        lrs.append(lr)
        losses.append(loss)
        w = w - lr * 2 * x.T @ residual / rows
        average = 0.98 * average + 0.02 * loss
        best = min(best, average / (1 - 0.98 ** (step + 1)))
        if step > 0 and average / (1 - 0.98 ** (step + 1)) > 4 * best:
            break
    suggestions = suggest(lrs, smooth(losses, 0.98), 10, 5, losses, 0.98)
    return {name: lr / edge for name, lr in suggestions.items()}


def time_table(
    args: argparse.Namespace, timings: dict[tuple[str, str], list[float]], tools: dict[str, Any]
) -> list[str]:
    lines = [
        "",
        f"## Time: {args.steps} sweep steps, the same in both",
        "",
        f"LR from {MIN_LR:g} to {MAX_LR:g}, divergence stopping off in both; {args.repeats} interleaved repeats, "
        "medians. Each time includes `Trainer.fit` setup and the restore; ours also draws the loss-vs-LR plot and "
        "writes it as a PNG (Lightning draws nothing).",
        "",
        "| model | tool | median s per range test | ms per step | time / lightning_tuning's |",
        "|---|---|---|---|---|",
    ]
    for model in MODELS:
        reference = statistics.median(timings[model, "lightning_tuning.LRRangeTest"])
        for tool in tools:
            median = statistics.median(timings[model, tool])
            lines.append(
                f"| {model} | {tool} | {median:.2f} | {median / args.steps * 1e3:.1f} | {median / reference:.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 repeats, 1 seed, 2 epochs")
    parser.add_argument("--skip_timing", action="store_true", help="leave out part 1 (time), e.g. on a loaded machine")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seeds, args.epochs = 2, 1, 2
    tools = {"lightning_tuning.LRRangeTest": ours, "lightning Tuner.lr_find": lightnings}
    timings = {(model, tool): [] for model in MODELS for tool in tools}  # type: dict[tuple[str, str], list[float]]
    with tempfile.TemporaryDirectory() as root:
        data = MNIST1DDataModule(num_samples=5000, batch_size=100)
        for factory in MODELS.values() if not args.skip_timing else ():  # warm-up: data, first-call costs
            ours(args.steps, data, root, False, factory)
        for _ in range(0 if args.skip_timing else args.repeats):
            for model, factory in MODELS.items():
                for tool, run in tools.items():
                    elapsed, _, ran = run(args.steps, data, root, False, factory)
                    assert ran == args.steps, f"{tool} ran {ran} of {args.steps} steps"
                    timings[model, tool].append(elapsed)
        # suggestions as a user gets them: each tool's defaults, divergence stop on
        defaults = {tool: run(args.steps, data, root, True, MNIST1DConvNet) for tool, run in tools.items()}
        default_choice = {
            "lightning_tuning.LRRangeTest": LRRangeTest().suggestion,
            "lightning Tuner.lr_find": "steepest",
        }
        candidates = {
            f"{tool}: {name}{' (default)' if name == default_choice[tool] else ''}": (lr, result[2])
            for tool, result in defaults.items()
            for name, lr in result[1].items()
        }
        accuracy = {
            (label, schedule): [
                accuracy_with(lr, schedule, seed, args.epochs, data, root) for seed in range(args.seeds)
            ]
            for label, (lr, _) in candidates.items()
            for schedule in ("constant", "one_cycle")
        }
    lines = [
        "# LR range test: lightning_tuning vs Lightning's Tuner.lr_find (MNIST-1D, batch 100)",
        "",
        machine_header(),
    ]
    if not args.skip_timing:
        lines += time_table(args, timings, tools)
    lines += [
        "",
        "## Quality: the suggested LR as a constant LR and as OneCycle's peak (MNIST-1D CNN)",
        "",
        "Each tool with its defaults (divergence stop at 4x the best loss); every suggestion each tool reports, "
        f"its default marked. Then {args.epochs} epochs of AdamW (weight decay 1e-2) at the suggestion as a constant "
        f"LR, and of OneCycle(max_lr=suggestion); test accuracy over {args.seeds} seeds, mean ± std.",
        "",
        "| tool: suggestion | sweep steps run | suggested LR | constant LR: test acc | OneCycle peak: test acc |",
        "|---|---|---|---|---|",
    ]
    for label, (lr, ran) in candidates.items():
        cells = []
        for schedule in ("constant", "one_cycle"):
            accs = accuracy[label, schedule]
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells.append(f"{statistics.mean(accs):.4f} ± {spread:.4f}")
        lines.append(f"| {label} | {ran} | {lr:.3g} | {' | '.join(cells)} |")
    problems = [(seed, scale, cond) for seed in range(5) for scale in (1.0, 10.0) for cond in (0.0, 1.0, 2.0)]
    ratios = [least_squares_ratios(*problem) for problem in problems]
    lines += [
        "",
        "## Safety: least squares, each suggestion as a multiple of 2/h (full-batch SGD diverges above 2/h)",
        "",
        f"{len(problems)} problems: 5 seeds x X scaled by 1 and 10 (h moves 100x) x conditioning 1, 10, 100; "
        "200 x 20 Gaussian design, planted weights, noise 0.1; the sweep of this pack's defaults (1e-7 to 10, "
        "100 steps, smoothing 0.98, stop at 4x the best). h from `torch.linalg.eigvalsh`.",
        "",
        "| suggestion | problems with a suggestion | lowest x 2/h | median x 2/h | highest x 2/h |",
        "|---|---|---|---|---|",
    ]
    for name in ("valley", "steepest", "min_div_10"):
        values = sorted(r[name] for r in ratios if name in r)
        lines.append(
            f"| {name} | {len(values)} of {len(problems)} | {values[0]:.3g} | {statistics.median(values):.3g} | "
            f"{values[-1]:.3g} |"
        )
    write_results("lr_range_test.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
