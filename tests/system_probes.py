"""Callbacks the system tests add to CLI runs through YAML, to see inside each process (rank) of a run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback


def _momentum(group: dict[str, Any]) -> float:
    return float(group["betas"][0]) if "betas" in group else float(group.get("momentum", 0.0))


class StepTrace(Callback):
    """Appends one JSON line per optimizer step (step index, LRs and momenta it used) to ``<path>.rank<R>.jsonl``.

    Written from a step post-hook and flushed at once, so a SIGKILL loses nothing already trained.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._handles: list[Any] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = Path(f"{self.path}.rank{trainer.global_rank}.jsonl")
        checksum = hashlib.sha256(
            b"".join(p.detach().cpu().numpy().tobytes() for p in pl_module.parameters())
        ).hexdigest()
        with out.open("a") as handle:
            handle.write(json.dumps({"event": "train_start", "params_sha256": checksum}) + "\n")

        def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            line = {
                "event": "step",
                "step": trainer.global_step,
                "lrs": [group["lr"] for group in optimizer.param_groups],
                "momenta": [_momentum(group) for group in optimizer.param_groups],
            }
            with out.open("a") as handle:
                handle.write(json.dumps(line) + "\n")

        self._handles = [optimizer.register_step_post_hook(record) for optimizer in trainer.optimizers]

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        reductions = sum(getattr(cb, "num_reductions", 0) for cb in trainer.callbacks)  # type: ignore[attr-defined]
        with Path(f"{self.path}.rank{trainer.global_rank}.jsonl").open("a") as handle:
            val_loss = float(trainer.callback_metrics.get("val_loss", torch.tensor(float("nan"))))
            event = {"event": "validation", "step": trainer.global_step, "reductions": reductions, "val_loss": val_loss}
            handle.write(json.dumps(event) + "\n")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        if trainer.is_global_zero:
            torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, f"{self.path}.final.pt")


class KillAt(Callback):
    """SIGKILLs its own process when the given optimizer step is about to start: a crash with no clean-up."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInValidationAt(Callback):
    """SIGKILLs its own process inside the first validation batch after the given optimizer step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if not trainer.sanity_checking and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class NaNAtStep(Callback):
    """Makes the training loss NaN from the given optimizer step on (a diverging run, on every rank or one)."""

    def __init__(self, step: int, rank: int | None = None) -> None:
        self.step = step
        self.rank = rank

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step >= self.step and self.rank in (None, trainer.global_rank):
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def _dropout_forward(module: Any, signals: torch.Tensor) -> torch.Tensor:
    features = module.features(signals.unsqueeze(1))
    return module.head(torch.nn.functional.dropout(features, p=0.2, training=module.training))


try:
    from lightning_tuning.demos import MNIST1DConvNet

    class DropoutConvNet(MNIST1DConvNet):
        """The quickstart's CNN with dropout before the head: a resume must restore the random states too."""

        def forward(self, signals: torch.Tensor) -> torch.Tensor:
            return _dropout_forward(self, signals)

except ImportError:  # pragma: no cover
    pass
