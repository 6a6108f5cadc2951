"""Lightning's own speed-parity case (an LSTM on an "average" dataset), bare Lightning against the pack's full stack.

Lightning checks in its ``parity_pytorch`` tests that a Lightning loop is at most 0.05 s per epoch slower than the
same loop in plain PyTorch: an LSTM trained on 300 random sequences of 100 steps x 10 features, batch 30, Adam at
lr 0.02, 4 epochs, with the whole ``fit`` timed and divided by the epochs. This script is that case written from its
description (the model and data are this project's own), with the pack in place of plain PyTorch:

* ``bare``: Lightning alone (no logger, no progress bar, no model summary, no checkpointing);
* ``bare_tb``: the same with a ``TensorBoardLogger`` (the logger's own cost, for attribution);
* ``stack``: the same with the pack's full stack: ``Warmup("10%")`` + ``CosineAnnealing(start="after_warmup")``
  + ``PlateauDecay(monitor="val_loss")`` + ``TuningDashboard()`` + ``TensorBoardLogger``;
* ``stack_no_dashboard``: ``stack`` without ``TuningDashboard`` (the dashboard's one-time preview figure).

Data: inputs ``N(0, 1)`` of shape ``(300, 100, 10)``; the target of each time step is the mean of its 10 features.
Model: ``LSTM(10, 20)`` and a linear head to one output per step, MSE loss. ``PlateauDecay`` decides after each
validation and refuses a fit without one, so EVERY variant also validates each epoch on 60 held-out sequences (two
batches): the only change to Lightning's case.

Per round, every variant is built and fitted once, interleaved (A,B,C,D then D,C,B,A); after one untimed warm-up
round (imports, first-call caches). Seconds per epoch = (``Trainer(...)`` + ``fit``) / 4, as Lightning's parity test
measures; the per-epoch time inside the loop (``on_train_epoch_start`` to the next, validation included) is shown
too. Medians and min-max over the rounds; the difference to ``bare`` is the median of the per-round paired
differences.

torch runs with one intra-op thread by default (``--threads``): on a shared 2-core machine two threads mostly wait
for each other.

Run: ``python benchmarks/parity_lstm.py`` (about 3 min on a quiet 2-core machine), ``--quick`` for a smoke run;
results go to ``benchmarks/results/parity_lstm.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import machine_header, md_table, quiet, quiet_trainer, write_results
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_tuning import CosineAnnealing, PlateauDecay, TuningDashboard, Warmup

quiet()

SEQUENCES, STEPS, FEATURES = 300, 100, 10
VAL_SEQUENCES = 60
BATCH, LR, EPOCHS = 30, 0.02, 4
THRESHOLD = 0.05  # Lightning's parity limit, seconds per epoch
VARIANTS = ["bare", "bare_tb", "stack", "stack_no_dashboard"]


def average_data(sequences: int, seed: int) -> TensorDataset:
    """Random sequences; the target of each step is the mean of its features."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(sequences, STEPS, FEATURES, generator=generator)
    return TensorDataset(inputs, inputs.mean(dim=-1, keepdim=True))


class AverageLSTM(LightningModule):
    """An LSTM that learns to output the mean of each step's features."""

    def __init__(self, hidden: int = 20) -> None:
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, inputs: Tensor) -> Tensor:
        outputs, _ = self.lstm(inputs)
        return self.head(outputs)

    def training_step(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        inputs, targets = batch
        loss = nn.functional.mse_loss(self(inputs), targets)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor]) -> None:
        inputs, targets = batch
        self.log("val_loss", nn.functional.mse_loss(self(inputs), targets))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=LR)


class EpochTimer(Callback):
    """``perf_counter`` at every ``on_train_epoch_start`` and at ``on_train_end``."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.marks.append(time.perf_counter())

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.marks.append(time.perf_counter())

    def per_epoch(self) -> float:
        return statistics.median(b - a for a, b in zip(self.marks, self.marks[1:], strict=False))


def stack(dashboard: bool) -> list[Callback]:
    callbacks: list[Callback] = [
        Warmup("10%"),
        CosineAnnealing(start="after_warmup"),
        PlateauDecay(monitor="val_loss", factor=0.5, patience=1),
    ]
    return [*callbacks, TuningDashboard()] if dashboard else callbacks


def run_once(variant: str, train: TensorDataset, val: TensorDataset, root: str, epochs: int) -> dict[str, float]:
    torch.manual_seed(0)
    timer = EpochTimer()
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    val_loader = DataLoader(val, batch_size=BATCH)
    start, cpu_start = time.perf_counter(), time.process_time()
    model = AverageLSTM()
    extra: list[Callback] = []
    if variant.startswith("stack"):
        extra = stack(dashboard=variant == "stack")
    logger: Any = TensorBoardLogger(root, name=variant) if variant != "bare" else False
    trainer = quiet_trainer(max_epochs=epochs, logger=logger, callbacks=[timer, *extra])
    trainer.fit(model, train_loader, val_loader)
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    assert trainer.current_epoch == epochs, (variant, trainer.current_epoch)
    return {
        "per_epoch": total / epochs,
        "cpu_epoch": cpu / epochs,
        "loop_epoch": timer.per_epoch(),
        "loss": float(trainer.callback_metrics["val_loss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="interleaved rounds of all variants")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 2 rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared)")
    parser.add_argument("--out", default="parity_lstm.md", help="file name under benchmarks/results/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats
    train, val = average_data(SEQUENCES, seed=0), average_data(VAL_SEQUENCES, seed=1)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as root:
        for variant in VARIANTS:  # warm-up round, not counted: imports (matplotlib, tensorboard), first-call caches
            run_once(variant, train, val, root, EPOCHS)
        for round_index in range(repeats):
            order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                results[variant].append(run_once(variant, train, val, root, EPOCHS))
            print(
                f"round {round_index + 1}/{repeats}: "
                + ", ".join(f"{v} {results[v][-1]['per_epoch']:.3f} s/epoch" for v in VARIANTS),
                file=sys.stderr,
            )

    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    def paired(variant: str, key: str, against: str = "bare") -> float:
        pairs = zip(results[variant], results[against], strict=True)
        return statistics.median(r[key] - b[key] for r, b in pairs)

    rows = []
    for variant in VARIANTS:
        values = [r["per_epoch"] for r in results[variant]]
        loops = [r["loop_epoch"] for r in results[variant]]
        diff = paired(variant, "per_epoch")
        rows.append(
            [
                f"`{variant}`",
                f"{med(variant, 'per_epoch'):.3f}",
                f"{min(values):.3f}-{max(values):.3f}",
                "" if variant == "bare" else f"**{diff:+.3f}**",
                "" if variant == "bare" else ("within" if diff <= THRESHOLD else "OVER"),
                f"{med(variant, 'loop_epoch'):.3f} ({min(loops):.3f}-{max(loops):.3f})",
                f"{med(variant, 'cpu_epoch'):.3f}"
                + ("" if variant == "bare" else f" ({paired(variant, 'cpu_epoch'):+.3f})"),
                f"{med(variant, 'loss'):.4f}",
            ]
        )
    stack_diff = paired("stack", "per_epoch")
    pack_only = paired("stack", "per_epoch", against="bare_tb")
    dashboard = paired("stack", "per_epoch", against="stack_no_dashboard")
    in_loop = paired("stack", "loop_epoch")
    cpu_diff = paired("stack", "cpu_epoch")
    text = "\n".join(
        [
            "# Lightning's LSTM parity case: bare Lightning against the full lightning_tuning stack",
            "",
            machine_header(),
            "",
            f"LSTM(10, 20) + Linear(20, 1) on {SEQUENCES} random sequences x {STEPS} steps x {FEATURES} features "
            f"(target: the mean of each step's features), batch {BATCH}, Adam lr {LR}, {EPOCHS} epochs "
            f"({SEQUENCES // BATCH} steps each), plus validation on {VAL_SEQUENCES} held-out sequences each epoch in "
            f"every variant (PlateauDecay needs one). {repeats} interleaved rounds after an untimed warm-up round; "
            "medians, min-max over the rounds.",
            "",
            "`stack` = Warmup('10%') + CosineAnnealing(start='after_warmup') + PlateauDecay(val_loss) + "
            "TuningDashboard + TensorBoardLogger; `bare_tb` = bare + TensorBoardLogger; `stack_no_dashboard` = "
            "`stack` without TuningDashboard.",
            "",
            md_table(
                [
                    "variant",
                    "s/epoch: (Trainer + fit) / 4, median",
                    "min-max",
                    "vs bare (median paired diff)",
                    f"Lightning's {THRESHOLD} s/epoch limit",
                    "s per epoch inside the loop (min-max)",
                    "CPU s/epoch of the process (paired diff)",
                    "final val_loss",
                ],
                rows,
            ),
            "",
            f"The full stack costs **{stack_diff:+.3f} s per epoch** over bare Lightning "
            f"({'within' if stack_diff <= THRESHOLD else 'OVER'} Lightning's {THRESHOLD} s/epoch parity threshold). "
            f"Of that, the pack's callbacks (stack vs bare + TensorBoardLogger) account for {pack_only:+.3f} s/epoch "
            f"and TuningDashboard alone (stack vs stack without it) {dashboard:+.3f} s/epoch. Inside the loop (epoch "
            f"start to epoch start, validation included) the stack costs {in_loop:+.3f} s per epoch; the rest of the "
            "difference is one-time work (Trainer and logger construction, fit start: the dashboard's schedule "
            f"preview figure and layout, teardown), which this short fit spreads over only {EPOCHS} epochs. In CPU "
            f"time of the process (all its threads; less sensitive to other processes on a shared machine than wall "
            f"time) the stack costs {cpu_diff:+.3f} s per epoch.",
            "",
        ]
    )
    write_results(args.out, text)


if __name__ == "__main__":
    main()
