"""Outcome at fixed budgets: constant LR, cosine, one-cycle, WSD and schedule-free AdamW on the MNIST-1D CNN.

Schedules matter most when the budget is short: the MNIST-1D CNN (``MNIST1DConvNet``, batch 100, 3600 training
signals = 36 steps per epoch) is trained for 150, 300, 600 and 1800 optimizer steps under each schedule, all at the
same peak LR (AdamW, lr 3e-3, weight decay 1e-2) so that only the shape differs, and the test accuracy on the 1000
held-out signals is measured once at the end (for schedule-free AdamW, on its averaged eval-mode weights, which the
``ScheduleFree`` callback leaves in the model). Seeds set the init and the shuffling; the data split is fixed.

Every finished run is stored at once in ``benchmarks/results/schedule_outcome.json`` (schedule, steps, seed, test
accuracy, seconds, machine), replacing a stored run of the same schedule, steps and seed; the table is then built
from every stored run of seeds ``0..--seeds-1``. So a long run can be split and resumed: ``--seed-start 2`` runs only
seeds 2..4 and reports them with the stored seeds 0 and 1; ``--report-only`` rebuilds the table from the stored
runs; ``--fresh`` discards them first.

Run: ``python benchmarks/schedule_outcome.py`` (5 seeds, about 2-3 h on 2 cores; ``--quick`` for a smoke run that
writes ``schedule_outcome_quick.md``/``.json``); results go to ``benchmarks/results/schedule_outcome.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS_DIR,
    cpu_model,
    machine_header,
    md_table,
    mean_std,
    nproc,
    quiet,
    quiet_trainer,
    write_results,
)

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


def load_runs(path: Path) -> list[dict[str, Any]]:
    """The stored raw runs (an empty list when the file does not exist)."""
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["runs"])


def store_run(path: Path, runs: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """Adds ``result`` to ``runs`` (replacing a run of the same schedule, steps and seed) and rewrites ``path``."""
    key = (result["name"], result["steps"], result["seed"])
    runs[:] = [r for r in runs if (r["name"], r["steps"], r["seed"]) != key] + [result]
    runs.sort(key=lambda r: (r["name"], r["steps"], r["seed"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"peak_lr": PEAK_LR, "runs": runs}, indent=1) + "\n")
    tmp.replace(path)  # atomic: an interrupted run never leaves a broken file


def report(
    runs: list[dict[str, Any]], schedules: list[str], budgets: list[int], seeds: int, note: str, raw_name: str
) -> str:
    """The markdown results file, from the stored runs of seeds ``0..seeds-1``."""
    wanted = [r for r in runs if r["seed"] < seeds]
    counts: set[int] = set()
    rows = []
    means: dict[int, dict[str, float]] = {steps: {} for steps in budgets}
    for name in schedules:
        row: list[Any] = [f"`{name}`"]
        for steps in budgets:
            accs = [r["acc"] for r in wanted if r["name"] == name and r["steps"] == steps]
            counts.add(len(accs))
            cell = mean_std(accs)
            if accs and len(accs) != seeds:
                cell += f" (n={len(accs)})"
            row.append(cell)
            if accs:
                means[steps][name] = sum(accs) / len(accs)
        rows.append(row)
    best = [f"{steps} steps: `{max(m, key=m.__getitem__)}`" for steps, m in means.items() if m]
    # the same seed gives the same init and the same batches to every schedule: differences paired by seed
    paired_rows = []
    if "constant" in schedules:
        for name in schedules:
            if name == "constant":
                continue
            row = [f"`{name}` - `constant`"]
            for steps in budgets:
                base = {r["seed"]: r["acc"] for r in wanted if r["name"] == "constant" and r["steps"] == steps}
                diffs = [r["acc"] - base[r["seed"]] for r in wanted if r["name"] == name and r["steps"] == steps
                         and r["seed"] in base]  # fmt: skip
                if not diffs:
                    row.append("n/a")
                    continue
                spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                higher, lower = sum(d > 1e-9 for d in diffs), sum(d < -1e-9 for d in diffs)
                row.append(f"{statistics.mean(diffs) + 0.0:+.3f} ± {spread:.3f} ({higher} higher, {lower} lower)")
            paired_rows.append(row)
    paired = (
        [
            "Difference to `constant`, paired by seed (each seed's accuracy minus the constant LR's at the same "
            "seed, which has the same init and batches; mean ± std of the differences; on how many seeds it was "
            "higher and lower):",
            "",
            md_table(["schedule", *(f"{steps} steps" for steps in budgets)], paired_rows),
            "",
        ]
        if paired_rows
        else []
    )
    complete = counts == {seeds}
    seed_text = (
        f"seeds 0..{seeds - 1} ({seeds} seed{'s' * (seeds > 1)}: init and shuffling; fixed data)"
        if complete
        else f"the stored seeds of 0..{seeds - 1} (n = seeds per cell where not {seeds}; init, shuffling; fixed data)"
    )
    machines = sorted({f"{r['nproc']} CPUs, {r['cpu']}, {r['workers']} worker(s)" for r in wanted if "cpu" in r})
    seconds = sum(r["seconds"] for r in wanted)
    per_step = [r["seconds"] / r["steps"] for r in wanted if r["steps"] == max(budgets)]
    return "\n".join(
        [
            "# Schedule outcome at fixed budgets (MNIST-1D CNN)",
            "",
            machine_header().split("(intra-op")[0].rstrip()
            + " (intra-op threads 1 per worker process), lightning "
            + machine_header().rsplit("lightning ", 1)[1],
            "",
            f"`MNIST1DConvNet` (channels 32), peak LR 3e-3 (AdamW, weight decay 1e-2) for every schedule, batch 100, "
            f"5000 signals (3600 train / 1000 test), no validation. Test accuracy after the last step, mean ± std "
            f"(sample std) over {seed_text}. 36 steps = 1 epoch. Raw runs: `{raw_name}`.",
            "",
            md_table(["schedule", *(f"{steps} steps" for steps in budgets)], rows),
            "",
            "Best mean per budget: " + "; ".join(best) + ".",
            "",
            *paired,
            "Schedules:",
            "",
            *(f"- `{name}`: {SCHEDULES[name]}" for name in schedules),
            "",
            f"Runs: {len(wanted)}, {seconds / 60:.0f} min of training in all (sum over runs, fit only)"
            + (
                f"; a {max(budgets)}-step run took {min(per_step) * max(budgets):.0f}-"
                f"{max(per_step) * max(budgets):.0f} s"
                if per_step
                else ""
            )
            + ". Measured on: "
            + "; ".join(machines)
            + ".",
            *([note] if note else []),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="report seeds 0..SEEDS-1")
    parser.add_argument("--seed-start", type=int, default=0, help="run only seeds SEED_START..SEEDS-1 (rest: stored)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[150, 300, 600, 1800])
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 seed, budgets 36 and 72")
    parser.add_argument("--fresh", action="store_true", help="discard the stored raw runs first")
    parser.add_argument("--report-only", action="store_true", help="rebuild the table from the stored runs only")
    parser.add_argument("--note", default="", help="a line added at the end of the results file")
    parser.add_argument("--out", default="schedule_outcome.md", help="file name under benchmarks/results/")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.seed_start, args.budgets = 1, 0, [36, 72]
        if args.out == "schedule_outcome.md":
            args.out = "schedule_outcome_quick.md"
    if not 0 <= args.seed_start < args.seeds:
        parser.error(f"--seed-start must be in [0, --seeds), got {args.seed_start} with --seeds {args.seeds}")
    raw_path = RESULTS_DIR / Path(args.out).with_suffix(".json").name
    runs = [] if args.fresh else load_runs(raw_path)
    jobs = (
        []
        if args.report_only
        else [
            (name, steps, seed)
            for steps in args.budgets
            for seed in range(args.seed_start, args.seeds)
            for name in args.schedules
        ]
    )
    jobs.sort(key=lambda job: -job[1])  # long runs first: the pool ends with short ones
    start = time.perf_counter()
    machine = {"cpu": cpu_model(), "nproc": nproc(), "workers": args.workers, "python": platform.python_version()}
    if jobs:
        with mp.get_context("spawn").Pool(args.workers, initializer=_worker_init) as pool:
            for index, result in enumerate(pool.imap_unordered(_call, jobs), 1):
                result.update(machine, finished=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
                store_run(raw_path, runs, result)
                print(f"[{index}/{len(jobs)}] {time.perf_counter() - start:.0f}s {result}", file=sys.stderr, flush=True)
    write_results(args.out, report(runs, args.schedules, args.budgets, args.seeds, args.note, raw_path.name))


if __name__ == "__main__":
    main()
