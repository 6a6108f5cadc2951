"""Outcome at fixed budgets: constant LR, cosine, one-cycle, WSD and schedule-free AdamW on the MNIST-1D CNN.

Schedules matter most when the budget is short: the MNIST-1D CNN (``MNIST1DConvNet``, batch 100, 3600 training
signals = 36 steps per epoch) is trained for 150, 300, 600 and 1800 optimizer steps under each schedule, all at the
same peak LR (AdamW, lr 3e-3, weight decay 1e-2) so that only the shape differs, and the test accuracy on the 1000
held-out signals is measured once at the end (for schedule-free AdamW, on its averaged eval-mode weights, which the
``ScheduleFree`` callback leaves in the model). Seeds set the init and the shuffling; the data split is fixed.

Run: ``python benchmarks/schedule_outcome.py`` (``--seeds 5`` for more; ``--quick`` for a smoke run); results go
to ``benchmarks/results/schedule_outcome.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header, md_table, mean_std, quiet, quiet_trainer, write_results

PEAK_LR = 3e-3
SCHEDULES: dict[str, str] = {
    "constant": "AdamW at 3e-3 throughout",
    "cosine": "Warmup('5%') + CosineAnnealing(start='after_warmup') to 0",
    "one_cycle": "OneCycle(max_lr=3e-3): torch defaults, 30% up from 3e-3/25, cosine down to 3e-3/25/1e4",
    "wsd": "WarmupStableDecay(warmup='5%', decay='20%', decay_shape='1-sqrt') to 0",
    "schedule_free": "AdamWScheduleFree(lr=3e-3, weight_decay=1e-2) + Warmup('5%') + ScheduleFree, no decay",
}


def _callbacks(name: str) -> list[Any]:
    from lightning_tuning import CosineAnnealing, OneCycle, ScheduleFree, Warmup, WarmupStableDecay

    if name == "constant":
        return []
    if name == "cosine":
        return [Warmup("5%"), CosineAnnealing(start="after_warmup")]
    if name == "one_cycle":
        return [OneCycle(max_lr=PEAK_LR)]
    if name == "wsd":
        return [WarmupStableDecay(warmup="5%", decay="20%", decay_shape="1-sqrt")]
    if name == "schedule_free":
        return [ScheduleFree(), Warmup("5%")]
    raise ValueError(name)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    quiet()


def run(name: str, steps: int, seed: int) -> dict[str, Any]:
    """One run; returns the final test accuracy."""
    import lightning.pytorch as pl
    import torch

    from lightning_tuning.demos import MNIST1DConvNet, MNIST1DDataModule

    class Model(MNIST1DConvNet):
        def configure_optimizers(self) -> Any:
            if name == "schedule_free":
                import schedulefree

                return schedulefree.AdamWScheduleFree(self.parameters(), lr=PEAK_LR, weight_decay=1e-2)
            return torch.optim.AdamW(self.parameters(), lr=PEAK_LR, weight_decay=1e-2)

    quiet()
    pl.seed_everything(seed, verbose=False)
    data = MNIST1DDataModule(num_samples=5000, batch_size=100)
    data.prepare_data()
    data.setup("fit")
    test_x, test_y = data.test_set.tensors  # type: ignore[union-attr]
    model = Model()
    trainer = quiet_trainer(
        max_steps=steps, max_epochs=-1, logger=False, limit_val_batches=0, callbacks=_callbacks(name)
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(-1) == test_y).float().mean())
    return {"name": name, "steps": steps, "seed": seed, "acc": accuracy, "seconds": time.perf_counter() - start}


def _call(job: tuple[str, int, int]) -> dict[str, Any]:
    return run(*job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budgets", type=int, nargs="+", default=[150, 300, 600, 1800])
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 seed, budgets 36 and 72")
    parser.add_argument("--out", default="schedule_outcome.md", help="file name under benchmarks/results/")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.budgets = 1, [36, 72]
    jobs = [(name, steps, seed) for steps in args.budgets for seed in range(args.seeds) for name in args.schedules]
    jobs.sort(key=lambda job: -job[1])  # long runs first: the pool ends with short ones
    start = time.perf_counter()
    results = []
    with mp.get_context("spawn").Pool(args.workers, initializer=_worker_init) as pool:
        for index, result in enumerate(pool.imap_unordered(_call, jobs), 1):
            results.append(result)
            print(f"[{index}/{len(jobs)}] {time.perf_counter() - start:.0f}s {result}", file=sys.stderr)
    rows = []
    for name in args.schedules:
        row: list[Any] = [f"`{name}`"]
        for steps in args.budgets:
            accs = [r["acc"] for r in results if r["name"] == name and r["steps"] == steps]
            row.append(mean_std(accs))
        rows.append(row)
    best = []
    for steps in args.budgets:
        means = {
            name: sum(r["acc"] for r in results if r["name"] == name and r["steps"] == steps) / args.seeds
            for name in args.schedules
        }
        best.append(f"{steps} steps: `{max(means, key=means.__getitem__)}`")
    text = "\n".join(
        [
            "# Schedule outcome at fixed budgets (MNIST-1D CNN)",
            "",
            machine_header()
            .replace(f"intra-op threads {__import__('torch').get_num_threads()}", "intra-op threads 1 per worker")
            .rstrip(".")
            + f"; {args.workers} worker processes.",
            "",
            f"`MNIST1DConvNet` (channels 32), peak LR 3e-3 (AdamW, weight decay 1e-2) for every schedule, batch 100, "
            f"5000 signals (3600 train / 1000 test), no validation. Test accuracy after the last step, mean ± std over "
            f"seeds 0..{args.seeds - 1} ({args.seeds} seeds: init and shuffling; fixed data). 36 steps = 1 epoch.",
            "",
            md_table(["schedule", *(f"{steps} steps" for steps in args.budgets)], rows),
            "",
            "Best mean per budget: " + "; ".join(best) + ".",
            "",
            "Schedules:",
            "",
            *(f"- `{name}`: {SCHEDULES[name]}" for name in args.schedules),
            "",
            f"Total wall time: {time.perf_counter() - start:.0f} s.",
            "",
        ]
    )
    write_results(args.out, text)


if __name__ == "__main__":
    main()
