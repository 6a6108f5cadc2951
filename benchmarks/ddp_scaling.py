"""DDP scaling on CPU: 2 processes vs. 1 at the same global batch, MNIST-1D CNN with the pack's full stack.

Each run is a fresh ``python benchmarks/ddp_scaling.py --worker ...`` process: ``MNIST1DConvNet`` trained with
``Warmup("5%")`` + ``CosineAnnealing(start="after_warmup")`` + ``PlateauDecay(val_loss)`` + ``TuningDashboard`` and a
``TensorBoardLogger``, validation every epoch. Layouts at the same global batch ``B``:

* ``1 proc``: ``devices=1``, batch ``B``, torch's default intra-op threads (2 on a 2-core machine);
* ``1 proc, 1 thread``: the same with ``torch.set_num_threads(1)`` (what each DDP process gets);
* ``2 procs DDP``: ``devices=2, strategy="ddp"`` (Lightning re-launches this script for rank 1; gloo backend),
  batch ``B/2`` per process.

Rank 0 times the loop (``on_train_batch_start`` to ``on_train_batch_start``, first ``--skip`` steps left out):
time per optimizer step, throughput = global batch / time per step; the launcher also times the whole process
(imports, process group, fit). Layouts run interleaved over ``--repeats`` rounds; medians.

Run: ``python benchmarks/ddp_scaling.py`` (about 5 min) or ``--quick`` (about 1 min);
results go to ``benchmarks/results/ddp_scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header, make_step_timer, md_table, nproc, quiet, write_results

LAYOUTS: dict[str, tuple[int, int | None]] = {  # name -> (processes, threads per process; None = torch default)
    "1 proc": (1, None),
    "1 proc, 1 thread": (1, 1),
    "2 procs DDP": (2, None),
}


def worker(args: argparse.Namespace) -> None:
    """One training run (one rank when launched by Lightning's DDP launcher)."""
    import torch
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_tuning import CosineAnnealing, PlateauDecay, TuningDashboard, Warmup
    from lightning_tuning.demos import MNIST1DConvNet, MNIST1DDataModule

    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    timer = make_step_timer(args.skip)
    threads: dict[str, int] = {}

    class ThreadProbe(Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            threads["n"] = torch.get_num_threads()

    trainer = Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_steps=args.steps,
        max_epochs=-1,
        logger=TensorBoardLogger(args.root, name="ddp"),
        log_every_n_steps=10,
        callbacks=[
            timer,
            ThreadProbe(),
            Warmup("5%"),
            CosineAnnealing(start="after_warmup"),
            PlateauDecay(monitor="val_loss", factor=0.5, patience=2),
            TuningDashboard(),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    data = MNIST1DDataModule(num_samples=5000, batch_size=args.batch // args.devices)
    trainer.fit(MNIST1DConvNet(), datamodule=data)
    if trainer.global_rank == 0:
        result = {
            "per_step": timer.per_step(),
            "intra": timer.intra_epoch_median(),
            "fit": timer.fit_end - timer.fit_start,
            "threads": threads.get("n"),
            "world_size": trainer.world_size,
            "steps": trainer.global_step,
        }
        Path(args.json).write_text(json.dumps(result))


def launch(layout: str, batch: int, steps: int, skip: int, root: str) -> dict[str, Any]:
    processes, threads = LAYOUTS[layout]
    out = Path(root) / f"result-{time.monotonic_ns()}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--devices", str(processes)]
    command += ["--batch", str(batch), "--steps", str(steps), "--skip", str(skip), "--json", str(out)]
    command += ["--root", root] + (["--threads", str(threads)] if threads else [])
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{layout} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {**json.loads(out.read_text()), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 400], help="global batch sizes")
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of the timing")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 60 steps, 1 round, batch 100")
    parser.add_argument("--out", default="ddp_scaling.md", help="file name under benchmarks/results/")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", default="", help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.steps, args.repeats, args.batches = 60, 1, [100]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        for round_index in range(args.repeats):
            for batch in args.batches:
                layouts = list(LAYOUTS) if round_index % 2 == 0 else list(LAYOUTS)[::-1]
                for layout in layouts:
                    result = launch(layout, batch, args.steps, args.skip, root)
                    results.setdefault((layout, batch), []).append(result)
                    print(
                        f"round {round_index + 1}: B={batch} {layout}: {result['per_step'] * 1e3:.2f} ms/step",
                        file=sys.stderr,
                    )
    rows = []
    for batch in args.batches:
        reference = statistics.median(r["per_step"] for r in results[("1 proc", batch)])
        for layout, (processes, _) in LAYOUTS.items():
            runs = results[(layout, batch)]
            per_step = statistics.median(r["per_step"] for r in runs)
            intra = statistics.median(r["intra"] for r in runs)
            rows.append(
                [
                    str(batch),
                    layout,
                    f"{processes} x {batch // processes}",
                    str(runs[0]["threads"]),
                    f"{per_step * 1e3:.2f}",
                    f"{intra * 1e3:.2f}",
                    f"{batch / per_step:,.0f}",
                    f"**{reference / per_step:.2f}x**",
                    f"{statistics.median(r['wall'] for r in runs):.1f}",
                ]
            )
    text = "\n".join(
        [
            "# DDP scaling on CPU (MNIST-1D CNN, full stack of callbacks)",
            "",
            machine_header(),
            "",
            f"`MNIST1DConvNet` (channels 32), AdamW lr 3e-3, Warmup('5%') + CosineAnnealing + PlateauDecay + "
            f"TuningDashboard, TensorBoardLogger (log_every_n_steps=10), validation every epoch. {args.steps} "
            f"optimizer steps per run, first {args.skip} left out; {args.repeats} interleaved rounds, medians. "
            f"DDP: `strategy='ddp'` (Lightning's subprocess launcher, gloo), rank 0 timed. `nproc` = {nproc()}.",
            "",
            md_table(
                [
                    "global batch",
                    "layout",
                    "procs x per-proc batch",
                    "torch threads/proc",
                    "ms/step",
                    "ms/step within an epoch",
                    "samples/s",
                    "speed-up vs 1 proc",
                    "whole process s",
                ],
                rows,
            ),
            "",
            "ms/step: the whole loop per optimizer step, validation amortised; 'within an epoch': the median gap "
            "between batch starts of one epoch. samples/s = global batch / ms/step. 'whole process': launch to exit "
            "(imports, process group setup, dashboard, fit).",
            "",
            f"Total wall time: {time.perf_counter() - start:.0f} s.",
            "",
        ]
    )
    write_results(args.out, text)


if __name__ == "__main__":
    main()
